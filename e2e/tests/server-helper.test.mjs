// belfry/server (clients/js/src/server), the Node backend helper, against the real server:
// notify with idempotent retries (through a server restart), and tokens the server accepts or
// refuses. Imports the SDK's build (clients/js/dist), as a Node backend would.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { Belfry } from "../lib/belfry.mjs";
import { BelfryError, BelfryServer, roomToken, userToken } from "../../clients/js/dist/server/index.js";

let belfry;
let secret;

before(async () => {
  belfry = await new Belfry().start();
  secret = readFileSync(join(belfry.dir, "secrets.toml"), "utf8").match(/jwt_secret = "([^"]+)"/)[1];
});

after(async () => {
  await belfry?.stop();
});

/** The user's notifications, read with a token minted here (the demo's endpoint mints for its own users). */
async function inbox(user) {
  const token = await userToken(user, { secret });
  const r = await fetch(`${belfry.url}/v1/me/notifications?limit=100`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  return (await r.json()).notifications;
}

const client = (options = {}) => new BelfryServer({ url: belfry.url, apiKey: belfry.apiKey(), backoffMs: 20, ...options });

test("notify stores once per idempotency key and says when it replayed", async () => {
  const first = await client().notify(["node-1"], "comment.created", { post_id: 7 }, { actor: "alice" });
  assert.equal(first.notifications[0].user_id, "node-1");
  assert.equal(first.replayed, false);
  const again = await client().notify(["node-1"], "comment.created", { post_id: 7 }, { actor: "alice", idempotency_key: first.idempotency_key });
  assert.equal(again.replayed, true);
  assert.equal((await inbox("node-1")).length, 1);
  const batch = await client().notifyMany([{ recipients: ["node-1"], type: "a" }, { recipients: ["node-1"], type: "b" }]);
  assert.notEqual(batch[0].idempotency_key, batch[1].idempotency_key);
});

test("errors carry the server's code and fields", async () => {
  await assert.rejects(client().notify([], "bad type!"), (e) => e instanceof BelfryError && e.code === "validation" && "type" in e.fields);
  await assert.rejects(client({ apiKey: "wrong" }).notify(["x"], "t"), (e) => e.code === "unauthorized" && e.status === 401);
});

test("a call issued while the server is down rides through its restart", async () => {
  await belfry.stop();
  const pending = client({ retries: 200 }).notify(["node-2"], "t");
  await belfry.start();
  const result = await pending;
  assert.equal(result.notifications[0].seq, 1);
  assert.equal((await inbox("node-2")).length, 1);
});

test("the server accepts a minted user token and refuses one signed with another secret", async () => {
  const get = async (token) =>
    (await fetch(`${belfry.url}/v1/me/unread-count`, { headers: { authorization: `Bearer ${token}` } })).status;
  assert.equal(await get(await userToken("node-3", { secret, rooms: ["doc:*"] })), 200);
  assert.equal(await get(await userToken("node-3", { secret: "another-secret-entirely-0123456789" })), 401);
  const claims = JSON.parse(Buffer.from((await roomToken("node-3", "doc:1", { secret, publish: true })).split(".")[1], "base64url"));
  assert.deepEqual(Object.keys(claims).sort(), ["exp", "iat", "publish", "room", "sub"]);
});

test("ES256 and RS256 tokens verify with the public key", async () => {
  for (const [algorithm, type, opts] of [["ES256", "ec", { namedCurve: "P-256" }], ["RS256", "rsa", { modulusLength: 2048 }]]) {
    const { privateKey } = generateKeyPairSync(type, opts);
    const pem = privateKey.export({ type: "pkcs8", format: "pem" });
    const token = await userToken("node-4", { privateKey: pem, algorithm });
    const [h, p, s] = token.split(".");
    const ok = verify("sha256", Buffer.from(`${h}.${p}`), { key: createPublicKey(privateKey), dsaEncoding: "ieee-p1363" }, Buffer.from(s, "base64url"));
    assert.ok(ok, algorithm);
  }
});
