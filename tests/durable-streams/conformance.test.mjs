// The upstream suite, as its package defines it: every runnable test against
// the server at STREAM_URL. (0.3.6's own `--run` CLI finds no test files
// with this vitest; calling runConformanceTests from a test file works.)
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

runConformanceTests({
  baseUrl: process.env.STREAM_URL ?? "http://127.0.0.1:8000",
  // The server under test runs with --durable-streams-long-poll 1s.
  longPollTimeoutMs: 1000,
  // The reserved subscription APIs (webhooks, pull-wake). Their webhook
  // receivers listen on 127.0.0.1: the server runs with
  // --webhooks-allow-loopback.
  subscriptions: process.env.DS_SUBSCRIPTIONS !== "off",
})
