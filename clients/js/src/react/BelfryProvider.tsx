import { useEffect, useState, type ReactNode } from "react";

import { BelfryClient, type BelfryClientOptions } from "../core/client.js";
import { BelfryContext } from "./context.js";

export type BelfryProviderProps =
  | { client: BelfryClient; options?: never; children?: ReactNode }
  | { options: BelfryClientOptions; client?: never; children?: ReactNode };

/**
 * Shares one Belfry connection with every hook and bell below it, and starts it on mount.
 *
 * With `options`, the provider creates the client once (later changes to `options` are ignored:
 * give the provider a `key`, such as the user id, to start over as someone else) and stops it on
 * unmount. With `client`, it starts that client and leaves stopping it to you.
 */
export function BelfryProvider(props: BelfryProviderProps) {
  const [owned] = useState(() => (props.client ? null : new BelfryClient(props.options!)));
  const client = props.client ?? owned!;

  useEffect(() => {
    client.start();
    return () => {
      if (client === owned) client.stop();
    };
  }, [client, owned]);

  return <BelfryContext.Provider value={client}>{props.children}</BelfryContext.Provider>;
}
