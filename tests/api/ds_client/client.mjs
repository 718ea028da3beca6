// Drives the official Durable Streams client (@durable-streams/client,
// pinned in package.json) against the server at $STREAM_URL, as
// tests/api/ds_client.rs asks: `node client.mjs <mode>`. Prints JSON lines;
// the last one is the result the test asserts on.
import { DurableStream, IdempotentProducer, stream } from "@durable-streams/client"

const url = process.env.STREAM_URL
const print = (value) => console.log(JSON.stringify(value))

const modes = {
  // One `live: false` read of a byte stream: its length, and the first byte
  // that is not `i % 251` (the pattern the test wrote), or -1.
  async bytes() {
    const bytes = await (await stream({ url, live: false })).body()
    let wrong = -1
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== i % 251) {
        wrong = i
        break
      }
    }
    print({ length: bytes.length, first_wrong_byte: wrong })
  },

  // One `live: false` read of a JSON stream: its values' `i`s.
  async json() {
    const items = await (await stream({ url, live: false })).json()
    print({ count: items.length, ids: items.map((v) => v.i) })
  },

  // A live SSE reader: prints `{received}` as values arrive, and once it has
  // $EXPECT of them, waits a second more (for duplicates) and prints them
  // with the errors the client reported (it stops on one, as by default).
  async sse() {
    const expect = Number(process.env.EXPECT)
    const ids = []
    const errors = []
    const onError = (e) => {
      errors.push(`${e.name}: ${e.message}`)
    }
    const res = await stream({ url, live: "sse", onError })
    const done = new Promise((resolve, reject) => {
      res.subscribeJson(async (batch) => {
        for (const item of batch.items) ids.push(item.i)
        print({ received: ids.length })
        if (ids.length >= expect) setTimeout(resolve, 1000)
      })
      res.closed.catch(reject)
    })
    await done
    res.cancel()
    print({ ids, errors })
  },

  // Idempotent producers on a new JSON stream: producer `p` at epoch 0
  // writes 0..999, the same producer id at epoch 1 (a restarted process)
  // writes 1000..1999, and the fenced epoch-0 producer then tries once more.
  // Answers what a `live: false` read returns and the errors reported.
  async producer() {
    const handle = await DurableStream.create({ url, contentType: "application/json" })
    const errors = []
    const onError = (e) => errors.push(`${e.name}: ${e.message}`)
    const first = new IdempotentProducer(handle, "p", { epoch: 0, onError })
    for (let i = 0; i < 1000; i++) first.append(JSON.stringify({ i, text: `value ${i}`, nested: { ok: i % 2 === 0 } }))
    await first.flush()
    const second = new IdempotentProducer(handle, "p", { epoch: 1, onError })
    for (let i = 1000; i < 2000; i++) second.append(JSON.stringify({ i, text: `value ${i}`, nested: { ok: i % 2 === 0 } }))
    await second.flush()
    await second.detach()
    const stale = []
    const zombie = new IdempotentProducer(handle, "p", {
      epoch: 0,
      onError: (e) => stale.push(`${e.name}: ${e.message}`),
    })
    zombie.append(JSON.stringify({ i: -1 }))
    await zombie.flush().catch((e) => stale.push(`${e.name}: ${e.message}`))
    const items = await (await stream({ url, live: false })).json()
    print({ errors, stale, items })
  },
}

await modes[process.argv[2]]()
