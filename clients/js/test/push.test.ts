import { describe, expect, it } from "vitest";

import { answerServiceWorker } from "../src/core/push.js";

/** A stand-in ServiceWorkerContainer: dispatches message events to listeners. */
class FakeContainer extends EventTarget {}

function ask(container: FakeContainer, id: string): Promise<unknown> {
  const channel = new MessageChannel();
  const answer = new Promise((resolve) => {
    channel.port1.onmessage = (event) => {
      resolve(event.data);
      channel.port1.close();
    };
  });
  container.dispatchEvent(
    new MessageEvent("message", { data: { type: "belfry:seen?", id }, ports: [channel.port2] }),
  );
  return answer;
}

describe("answerServiceWorker", () => {
  it("tells the service worker which notifications the page already has", async () => {
    const container = new FakeContainer();
    const seen = new Set(["a"]);
    const stop = answerServiceWorker({ has: (id) => seen.has(id) }, container as unknown as ServiceWorkerContainer);
    await expect(ask(container, "a")).resolves.toEqual({ seen: true });
    await expect(ask(container, "b")).resolves.toEqual({ seen: false });
    stop();
  });

  it("ignores other messages and does nothing without a container", () => {
    const container = new FakeContainer();
    const stop = answerServiceWorker({ has: () => true }, container as unknown as ServiceWorkerContainer);
    container.dispatchEvent(new MessageEvent("message", { data: { type: "other" } }));
    stop();
    expect(answerServiceWorker({ has: () => true }, undefined)).toBeTypeOf("function");
  });
});
