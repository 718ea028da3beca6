// switchboard's browser client: an ES module with no dependencies, served by
// every switchboard server at /client.js. Types: /client.d.ts.
//
//   import { Switchboard } from "/client.js";
//   const sb = new Switchboard();
//   const features = sb.live("features");
//   features.on("change", () => render([...features.items.values()]));
//
// What it gets right so a page does not have to: a snapshot and the stream
// from the snapshot's cursor, events once each and in id order across
// reconnects and server restarts, `resync` handled, one fresh stream ticket
// per (re)connect in token mode, `If-Match` from the version held, an
// `Idempotency-Key` on every write, lock leases renewed before they run out
// and released when the page goes away, streaming messages stitched from
// their deltas by offset, and an outbox: writes made while the server cannot
// be reached are kept (IndexedDB), shown at once as pending, and sent in
// order, each exactly once, when it is back.
//
// All subscriptions of one `Switchboard` share one `EventSource` (browsers
// allow six HTTP/1.1 connections per origin): it carries the union of their
// channels from the oldest position any of them needs, and each subscription
// drops what it has already seen. Across the tabs of a browser with the same
// server and credentials, one tab holds that `EventSource` (a Web Lock) and
// passes its events to the others (a BroadcastChannel): see `StreamHub`.
"use strict";

/** The work-item collections, by name. */
const WORK_ITEMS = ["features", "tracks", "spikes"];
/** What `live()` accepts. */
const COLLECTIONS = [...WORK_ITEMS, "files", "conversations"];
/** Where a tab's session id is kept. */
const SESSION_KEY = "switchboard.session";
/** Reconnect backoff: first delay and ceiling, in milliseconds. */
const BACKOFF_FIRST = 500;
const BACKOFF_MAX = 5000;
/** Where the seed of the browser's stream session is kept (`localStorage`). */
const BROWSER_KEY = "switchboard.browser";
/** How long a tab that takes the browser's stream over waits for the others' positions. */
const TAKEOVER_WAIT = 50;
/** The outbox's IndexedDB database and its one object store. */
const OUTBOX_DB = "switchboard-outbox";
const OUTBOX_STORE = "writes";
/** How many settled writes `outbox.sent(id)` still knows. */
const OUTCOMES_KEPT = 1000;
/** Prefixes of the ids the server makes; the client makes the same for a create. */
const ID_PREFIX = { features: "feat-", tracks: "trk-", spikes: "spk-", files: "file-", conversations: "conv-" };

/**
 * An answer of the API that is not a success, or a request that could not
 * reach the server (`status` 0, `code` `"network_error"`).
 */
export class SwitchboardError extends Error {
  /**
   * @param {number} status HTTP status (0 when the server was not reached)
   * @param {string} code the API's error code (`lock_held`, `precondition_failed`, …)
   * @param {string} message a human readable message
   * @param {object} [details] the API's `details`
   */
  constructor(status, code, message, details) {
    super(message);
    this.name = "SwitchboardError";
    this.status = status;
    this.code = code;
    this.details = details ?? {};
  }
}

/** A random lowercase hex string of `bytes` bytes. */
function randomHex(bytes) {
  const buf = new Uint8Array(bytes);
  globalThis.crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One session id per tab, kept in `sessionStorage` across reloads. */
function tabSessionId() {
  try {
    const kept = globalThis.sessionStorage?.getItem(SESSION_KEY);
    if (kept) return kept;
    const made = "tab-" + randomHex(8);
    globalThis.sessionStorage?.setItem(SESSION_KEY, made);
    return made;
  } catch (_) {
    return "tab-" + randomHex(8);
  }
}

/** Does the browser have what one stream for all tabs needs? */
function canShare() {
  return typeof globalThis.BroadcastChannel === "function" && typeof globalThis.navigator?.locks?.request === "function" && Boolean(globalThis.crypto?.subtle);
}

/** SHA-256 of a string, in lowercase hex. */
async function sha256hex(text) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Who a token names, for grouping tabs: a JWT's issuer and subject (so a
 * refreshed JWT of the same user keeps its group), else the token itself.
 */
function tokenIdentity(token) {
  const parts = String(token).split(".");
  if (parts.length === 3) {
    try {
      const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
      if (typeof claims.sub === "string") return ["jwt", claims.iss ?? null, claims.sub];
    } catch (_) {
      // Not a JWT: the token itself.
    }
  }
  return ["token", String(token)];
}

/**
 * The session the browser's shared stream is opened as: `browser-` and 16
 * hex digits, the same for every tab and leader of this browser profile and
 * group (a random seed kept in `localStorage`, hashed with the group's key).
 */
async function browserSessionId(key) {
  let seed = null;
  try {
    seed = globalThis.localStorage?.getItem(BROWSER_KEY);
    if (!seed) {
      seed = randomHex(16);
      globalThis.localStorage?.setItem(BROWSER_KEY, seed);
    }
  } catch (_) {
    seed = null;
  }
  return "browser-" + (await sha256hex(`${seed ?? randomHex(16)} ${key}`)).slice(0, 16);
}

/** Does a connection carrying `patterns` carry every pattern of `wanted`? */
function covers(patterns, wanted) {
  return wanted.every((c) => patterns.some((p) => p === "*" || p === c || (p.endsWith("*") && !c.endsWith("*") && matches(p, c))));
}

/** Does `channel` match the subscription pattern (`*` suffix = prefix)? */
function matches(pattern, channel) {
  return pattern.endsWith("*") ? channel.startsWith(pattern.slice(0, -1)) : pattern === channel;
}

/** `a,b` or `["a","b"]` → `["a","b"]`. */
function list(value) {
  if (value == null) return [];
  return (Array.isArray(value) ? value : String(value).split(",")).map((s) => String(s).trim()).filter(Boolean);
}

/** A small event emitter: `on(name, fn)` returns the function that removes it. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
  }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this.off(name, fn);
  }
  off(name, fn) {
    this._handlers.get(name)?.delete(fn);
  }
  _emit(name, value) {
    for (const fn of [...(this._handlers.get(name) ?? [])]) {
      try {
        fn(value);
      } catch (error) {
        // A listener's bug must not break delivery to the others.
        setTimeout(() => { throw error; });
      }
    }
  }
}

/**
 * A subscription: what `sb.subscribe()` returns. Events reach `onEvent` once
 * each, in id order; a `resync` reaches it as an event of type `"resync"`.
 */
class Subscription {
  constructor(hub, { channels, resourceIds, includeOwn }, onEvent) {
    this._hub = hub;
    this.channels = list(channels ?? "*");
    this.resourceIds = list(resourceIds);
    this.includeOwn = Boolean(includeOwn);
    this._onEvent = onEvent;
    /** The id of the newest event this subscription has passed (or skipped). */
    this.lastEventId = null;
    /** True until a connection that starts at or before `lastEventId` is open. */
    this._waiting = true;
    this.closed = false;
    /** Resolves once the subscription is registered with its start position. */
    this.ready = Promise.resolve();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this._hub.remove(this);
  }

  _wants(event) {
    if (!this.channels.some((p) => matches(p, event.channel))) return false;
    if (this.resourceIds.length && !this.resourceIds.includes(event.resource_id)) return false;
    if (!this.includeOwn && event.session_id != null && event.session_id === this._hub.sb.sessionId) return false;
    return true;
  }

  /** The shared stream offers every event it carries, in id order. */
  _offer(event) {
    if (this.closed || this._waiting || event.id <= this.lastEventId) return;
    this.lastEventId = event.id;
    if (this._wants(event)) this._onEvent(event);
  }

  /** The log no longer holds (or does not yet hold) this position. */
  _resync(data) {
    this.lastEventId = data.head_id;
    if (!this.closed) this._onEvent({ id: data.head_id, type: "resync", channel: null, payload: data });
  }
}

/**
 * In the tab that holds the browser's stream: another tab's needs, as one
 * subscription that delivers nothing here. It is what the connection must
 * carry for that tab (the union of its channels, from the oldest position
 * its subscriptions hold), and it moves forward with every event passed on,
 * as a subscription of this tab would.
 */
class RemoteTab extends Subscription {
  constructor(hub, tab) {
    super(hub, { channels: [] }, () => {});
    this.tab = tab;
  }

  close() {
    this.closed = true;
    this._hub.remote.delete(this.tab);
  }
}

/**
 * The stream of a `Switchboard`, shared by its subscriptions — and by the
 * `Switchboard`s of every tab of this browser with the same server and
 * credentials.
 *
 * Its `role`:
 * - `"own"`: this `Switchboard` holds its own `EventSource` (no Web Locks or
 *   BroadcastChannel, or `sharedStream: false`).
 * - `"leader"`: it holds the browser's `EventSource` (elected with a Web
 *   Lock held for its life) and posts every event, `resync`, the status and
 *   each new connection on a BroadcastChannel. The connection carries what
 *   its own subscriptions and every other tab's (`RemoteTab`) need.
 * - `"follower"`: it holds no connection. Events come from the leader's
 *   posts; what its subscriptions need that the leader's connection does
 *   not carry (a channel, an older position) it asks for with a `need`.
 *
 * Ordering: one tab posts at a time (the lock holder) and a channel keeps
 * one sender's order, so a follower sees each connection's events as the
 * leader did. A connection announces itself (`conn`: its channels and the
 * position it starts after) before its first event; a follower's
 * subscription takes events only from a connection that started at or
 * before its own position and carries its channels, and drops ids it has
 * passed. Whatever the leader chose, no tab can miss or repeat an event: a
 * wrong choice only costs one more reconnect.
 */
class StreamHub {
  constructor(sb, shared) {
    this.sb = sb;
    /** @type {Set<Subscription>} */
    this.subs = new Set();
    /** Leader: the other tabs' needs, by tab id. @type {Map<string, RemoteTab>} */
    this.remote = new Map();
    /** @type {EventSource|null} */
    this.source = null;
    /** The channel patterns the connection carries. */
    this.channels = [];
    /** The newest id the connection has passed; null before the first. */
    this.position = null;
    this.status = "idle";
    this._shared = shared && canShare();
    /** `"own"`, `"leader"` or `"follower"`; null until the first subscription. */
    this.role = this._shared ? null : "own";
    /** This hub's id on the channel. */
    this.tab = "t" + randomHex(8);
    /** The connection events are taken from: `tab:generation` of its holder. */
    this.conn = null;
    /** Follower: the tab holding the stream, and the status it announced. */
    this.leader = null;
    this.leaderStatus = "connecting";
    /** The session the browser's stream is opened as (presence); own: the tab's. */
    this.streamSession = sb.sessionId;
    this.closed = false;
    this._generation = 0;
    this._backoff = BACKOFF_FIRST;
    this._timer = null;
    this._queued = false;
    this._soon = null;
    this._joining = false;
    /** @type {BroadcastChannel|null} */
    this._channel = null;
    this._release = null;
    this._abort = null;
  }

  /** Local subscriptions and, in the leader, the other tabs' needs. */
  _all() {
    return [...this.subs, ...this.remote.values()];
  }

  add(sub) {
    if (this.closed) this._reopen();
    this.subs.add(sub);
    this._cover(sub);
    if (this.role === null) this._join();
  }

  /** A subscription after `sb.close()`: start again, as a new `Switchboard` would. */
  _reopen() {
    this.closed = false;
    this._joining = false;
    this.role = this._shared ? null : "own";
    this.leader = null;
    this.conn = null;
    this.position = null;
    this.remote.clear();
    this._release = null;
    this._abort = null;
  }

  /**
   * Takes `sub` on the current connection if it carries its channels from
   * at or before its position; else `sub` waits for the next connection,
   * which starts where it needs.
   */
  _cover(sub) {
    // A connection being retried still counts: it resumes from every
    // subscription's position.
    if (this.conn == null || !covers(this.channels, sub.channels) || this.position == null || sub.lastEventId < this.position) {
      sub._waiting = true;
      this._reconnectSoon();
    } else {
      sub._waiting = false;
    }
  }

  remove(sub) {
    this.subs.delete(sub);
    if (this.subs.size) return;
    if (this.role === "follower") {
      // The leader stops carrying this tab; this tab keeps following the
      // connection, so that its next subscription starts from it.
      this._post({ t: "need", channels: [], from: null });
      this._setStatus("idle");
    } else if (this.remote.size === 0) {
      this._close("idle");
      this.position = null;
    }
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    if (this.role === "leader") this._post({ t: "status", status });
    this.sb._emit("status", status);
  }

  /** A follower's status: the leader's while attached to its connection. */
  _followerStatus() {
    if (this.subs.size === 0) return "idle";
    if (this.conn != null) return this.leaderStatus;
    return this.status === "live" || this.status === "reconnecting" ? "reconnecting" : "connecting";
  }

  _close(status) {
    this._generation++;
    clearTimeout(this._timer);
    this._timer = null;
    if (this.source) this.source.close();
    this.source = null;
    this.conn = null;
    this._setStatus(status);
  }

  /**
   * Reconnect once for every subscription added within a few milliseconds
   * (a page's start adds several): each reconnect is a new connection. A
   * follower asks the leader once for all of them.
   */
  _reconnectSoon(delay = 20) {
    if (this._queued) return;
    this._queued = true;
    this._soon = setTimeout(() => {
      this._queued = false;
      this._connect();
    }, delay);
  }

  async _connect() {
    if (this.closed || this.role === null) return;
    if (this.role === "follower") {
      this._need();
      return;
    }
    const all = this._all();
    const wasLive = this.status === "live";
    this._close(all.length ? (wasLive ? "reconnecting" : "connecting") : "idle");
    if (all.length === 0) return;
    const generation = this._generation;
    for (const sub of all) sub._waiting = false;
    const start = Math.min(...all.map((s) => s.lastEventId));
    const patterns = [...new Set(all.flatMap((s) => s.channels))];
    const channels = patterns.includes("*") ? ["*"] : patterns;
    // The server leaves nothing out: every tab drops its own session's
    // events itself (includeOwn), and the stream's session is not a tab's.
    const query = {
      channels: channels.join(","),
      include_own: "true",
      plain: "true",
      session_id: this.streamSession,
      last_event_id: String(start),
    };
    if (this.sb.agentId && !this.sb._hasToken()) query.agent_id = this.sb.agentId;
    this.channels = channels;
    this.position = start;
    this.conn = `${this.tab}:${generation}`;
    this._announce();
    try {
      if (this.sb._hasToken()) {
        // EventSource cannot send headers: one single-use ticket per connection.
        const ticket = await this.sb._request("POST", "/api/stream-tickets", { body: {} });
        query.ticket = ticket.body.ticket;
      }
    } catch (error) {
      if (generation !== this._generation) return;
      this.sb._emit("error", error);
      this._retryLater(generation);
      return;
    }
    if (generation !== this._generation) return;
    const source = new EventSource(this.sb._url("/api/stream", query));
    this.source = source;
    source.onopen = () => {
      if (generation !== this._generation) return;
      this._backoff = BACKOFF_FIRST;
      this._setStatus("live");
    };
    source.onmessage = (message) => {
      if (generation !== this._generation) return;
      if (this.role === "leader") this._post({ t: "event", conn: this.conn, data: message.data });
      this._dispatch(JSON.parse(message.data));
    };
    source.addEventListener("resync", (message) => {
      if (generation !== this._generation) return;
      const data = JSON.parse(message.data);
      if (this.role === "leader") this._post({ t: "resync", conn: this.conn, data });
      this._resync(data);
    });
    source.addEventListener("reauthenticate", (message) => {
      if (generation !== this._generation) return;
      // The credential ended (a JWT's exp, the app's answer's lifetime):
      // reconnect at once, with a fresh ticket from a fresh `token()`, from
      // the last id seen. A revoked one waits like any failure.
      const data = JSON.parse(message.data);
      if (data.reason === "expired") {
        this._connect();
      } else {
        this.sb._emit("error", new Error(data.message));
        this._retryLater(generation);
      }
    });
    source.onerror = () => {
      if (generation !== this._generation) return;
      // Reconnect ourselves: EventSource would reuse a spent ticket and
      // could not resume a subscription that joined since.
      this._retryLater(generation);
    };
  }

  /** One event of the connection, offered to every subscription in id order. */
  _dispatch(event) {
    this.position = Math.max(this.position, event.id);
    for (const sub of this._all()) sub._offer(event);
  }

  _retryLater(generation) {
    if (this.source) this.source.close();
    this.source = null;
    this._setStatus("reconnecting");
    const delay = this._backoff * (0.75 + Math.random() / 2);
    this._backoff = Math.min(this._backoff * 2, BACKOFF_MAX);
    this._timer = setTimeout(() => {
      if (generation === this._generation) this._connect();
    }, delay);
  }

  /**
   * The connection's start was pruned, ahead of the log or lost in a
   * failover: it goes on from the head. Subscriptions whose own position is lost are told; the others
   * resume from where they were, on a new connection.
   */
  _resync(data) {
    const head = data.head_id;
    for (const sub of this._all()) {
      const expired = data.reason === "cursor_expired" && sub.lastEventId < data.oldest_id - 1;
      const ahead = sub.lastEventId > head;
      // A failover lost the events above `kept_through` (PostgreSQL).
      const lost = data.reason === "failover" && sub.lastEventId > data.kept_through;
      if (expired || ahead || lost) sub._resync(data);
    }
    this.position = head;
    let behind = false;
    for (const sub of this._all()) {
      if (sub.lastEventId < head) {
        sub._waiting = true;
        behind = true;
      }
    }
    if (behind) this._reconnectSoon();
  }

  // ---- one stream per browser -------------------------------------------

  /**
   * Joins the tabs of this browser that use the same server and
   * credentials: follows the leader's connection until this tab gets the
   * lock, then leads until it closes (the browser releases the lock of a
   * closed or crashed tab, and the next tab in line takes over).
   */
  async _join() {
    if (this._joining) return;
    this._joining = true;
    let key = null;
    try {
      key = await this.sb._sharedKey();
      this.streamSession = await browserSessionId(key);
    } catch (error) {
      this.sb._emit("error", error);
    }
    if (this.closed) return;
    if (key == null) {
      this.role = "own";
      this._reconnectSoon();
      return;
    }
    this._channel = new BroadcastChannel(key);
    this._channel.onmessage = (message) => this._onMessage(message.data);
    this.role = "follower";
    this._abort = new AbortController();
    globalThis.navigator.locks
      .request(key, { signal: this._abort.signal }, () => {
        if (this.closed) return undefined;
        this._lead();
        return new Promise((resolve) => {
          this._release = resolve;
        });
      })
      .catch(() => {
        // Locks refused (an opaque origin, a sandboxed frame): a stream of its own.
        if (this.closed || this.role !== "follower") return;
        this._channel.close();
        this._channel = null;
        this.role = "own";
        this.conn = null;
        this.position = null;
        this.streamSession = this.sb.sessionId;
        this._reconnectSoon();
      });
    this._setStatus(this._followerStatus());
    this._reconnectSoon();
  }

  /**
   * This tab got the lock: it asks every tab where it is, waits a moment
   * for the answers, and opens the connection from the oldest position
   * needed. An answer that comes later makes it reconnect from there.
   */
  _lead() {
    this.role = "leader";
    this.leader = this.tab;
    this.conn = null;
    this.remote.clear();
    this._post({ t: "leader" });
    this._close(this.status === "live" || this.status === "reconnecting" ? "reconnecting" : this.status);
    clearTimeout(this._soon);
    this._queued = false;
    this._reconnectSoon(TAKEOVER_WAIT);
  }

  _post(message) {
    if (this._channel) this._channel.postMessage({ ...message, tab: this.tab });
  }

  /** Leader: announces its connection, so that followers take events from it. */
  _announce() {
    this._post({ t: "conn", conn: this.conn, channels: this.channels, position: this.position, status: this.status });
  }

  /** Follower: asks the leader to carry what this tab's subscriptions need. */
  _need() {
    if (this.subs.size === 0) return;
    const subs = [...this.subs];
    const patterns = [...new Set(subs.flatMap((s) => s.channels))];
    this._setStatus(this._followerStatus());
    this._post({
      t: "need",
      channels: patterns.includes("*") ? ["*"] : patterns,
      from: Math.min(...subs.map((s) => s.lastEventId)),
    });
  }

  _onMessage(m) {
    if (this.closed || !m || m.tab === this.tab) return;
    if (this.role === "leader") {
      if (m.t === "need") this._remoteNeed(m);
      return;
    }
    if (this.role !== "follower") return;
    if (m.t === "leader") {
      // A new leader: nothing more from the old connection; tell it where we are.
      this.leader = m.tab;
      this.conn = null;
      for (const sub of this.subs) sub._waiting = true;
      this._setStatus(this._followerStatus());
      this._need();
    } else if (m.t === "conn") {
      this.leader = m.tab;
      this.leaderStatus = m.status;
      this.conn = m.conn;
      this.channels = m.channels;
      this.position = m.position;
      let behind = false;
      for (const sub of this.subs) {
        sub._waiting = !(covers(m.channels, sub.channels) && sub.lastEventId >= m.position);
        behind ||= sub._waiting;
      }
      this._setStatus(this._followerStatus());
      if (behind) this._reconnectSoon();
    } else if (m.t === "event") {
      if (m.conn === this.conn) this._dispatch(JSON.parse(m.data));
    } else if (m.t === "resync") {
      if (m.conn === this.conn) this._resync(m.data);
    } else if (m.t === "status") {
      if (m.tab !== this.leader) return;
      this.leaderStatus = m.status;
      this._setStatus(this._followerStatus());
    }
  }

  /** Leader: another tab's needs replace what it asked for before. */
  _remoteNeed({ tab, channels, from }) {
    if (!channels.length) {
      this.remote.delete(tab);
      if (this.subs.size === 0 && this.remote.size === 0) {
        this._close("idle");
        this.position = null;
      }
      return;
    }
    let proxy = this.remote.get(tab);
    if (!proxy) {
      proxy = new RemoteTab(this, tab);
      this.remote.set(tab, proxy);
    }
    proxy.channels = channels;
    proxy.lastEventId = from;
    this._cover(proxy);
    // Carried already: the tab takes events from here on.
    if (!proxy._waiting) this._announce();
  }

  /** The page goes away: the leader stops carrying this tab. */
  _hide() {
    if (this.role === "follower" && this.subs.size) this._post({ t: "need", channels: [], from: null });
  }

  /** The page came back from the back/forward cache: ask again. */
  _show() {
    if (this.role !== "follower") return;
    this.conn = null;
    for (const sub of this.subs) sub._waiting = true;
    this._need();
  }

  /**
   * Closes the connection, or leaves the browser's stream: a leader stops
   * posting before it gives the lock up, and the next tab in line takes over.
   */
  shutdown() {
    this._hide();
    this.closed = true;
    clearTimeout(this._soon);
    this._queued = false;
    this._channel?.close();
    this._channel = null;
    this._close("idle");
    this.position = null;
    this._abort?.abort();
    this._release?.();
  }
}

/** Freezes `value` and everything it holds that is not frozen yet. */
function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/**
 * What frameworks bind to (React's `useSyncExternalStore`, a Svelte store,
 * a Vue `shallowRef`): `getSnapshot()` answers an immutable snapshot, the
 * same object until the next `"change"` and a new one after it;
 * `subscribe(listener)` calls `listener(snapshot)` at once and after every
 * change, and returns the function that stops it. Objects in a snapshot are
 * frozen: the client never changes an item in place, it replaces it.
 */
class Observable extends Emitter {
  constructor() {
    super();
    this._snapshot = null;
    /** @type {Set<{listener: Function}>} */
    this._listeners = new Set();
    // Bound, so that they can be passed as they are:
    // `useSyncExternalStore(live.subscribe, live.getSnapshot)`.
    this.subscribe = this.subscribe.bind(this);
    this.getSnapshot = this.getSnapshot.bind(this);
  }

  getSnapshot() {
    if (this._snapshot === null) this._snapshot = deepFreeze(this._makeSnapshot());
    return this._snapshot;
  }

  subscribe(listener) {
    // One entry per call: the same function subscribed twice (React's
    // StrictMode does) is unsubscribed once per call.
    const entry = { listener };
    this._listeners.add(entry);
    listener(this.getSnapshot());
    return () => {
      this._listeners.delete(entry);
    };
  }

  _emit(name, value) {
    if (name === "change") this._snapshot = null;
    super._emit(name, value);
    if (name !== "change") return;
    for (const entry of [...this._listeners]) {
      if (!this._listeners.has(entry)) continue;
      try {
        entry.listener(this.getSnapshot());
      } catch (error) {
        setTimeout(() => { throw error; });
      }
    }
  }
}

/**
 * What a live collection and a live conversation share: a snapshot, the
 * stream from its cursor, and on `resync` a fresh snapshot while the events
 * that arrive meanwhile wait (and are applied if newer than it).
 */
class LiveView extends Observable {
  constructor(sb) {
    super();
    this._sb = sb;
    this.cursor = null;
    this.closed = false;
    /** True once the first snapshot is in. */
    this.loaded = false;
    this._buffer = null;
    this._subscription = null;
  }

  /** Loads the first snapshot (retrying while the server is away), then subscribes. */
  async _start(channels) {
    const cursor = await this._retrying(() => this._load());
    if (this.closed) return this;
    this.loaded = true;
    this._subscription = this._sb.subscribe(
      { channels, lastEventId: cursor, includeOwn: true },
      (event) => this._onEvent(event),
    );
    this._emit("change", { reason: "snapshot" });
    return this;
  }

  async _retrying(load) {
    for (let delay = BACKOFF_FIRST; ; delay = Math.min(delay * 2, BACKOFF_MAX)) {
      try {
        return await load();
      } catch (error) {
        if (this.closed || (error.status >= 400 && error.status < 500)) throw error;
        this._sb._emit("error", error);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  _onEvent(event) {
    if (event.type === "resync") {
      this._refetch();
      return;
    }
    if (this._buffer) {
      this._buffer.push(event);
      return;
    }
    if (this._apply(event)) this._emit("change", { reason: "event", event });
  }

  async _refetch() {
    if (this._buffer) return;
    this._buffer = [];
    try {
      const cursor = await this._retrying(() => this._load());
      const pending = this._buffer.filter((e) => e.id > cursor && e.type !== "resync");
      this._buffer = null;
      for (const event of pending) this._apply(event);
      if (this._subscription && this._subscription.lastEventId < cursor) this._subscription.lastEventId = cursor;
      this._emit("change", { reason: "resync" });
    } catch (error) {
      this._buffer = null;
      this._sb._emit("error", error);
    }
  }

  close() {
    this.closed = true;
    this._subscription?.close();
  }
}

/**
 * A live collection: `.items` (a Map by id) equal to the server's state as of
 * `.cursor`, kept by a snapshot from `/api/sync` and the stream from its
 * cursor, refetched on `resync`.
 */
class LiveCollection extends LiveView {
  constructor(sb, name) {
    super(sb);
    if (!COLLECTIONS.includes(name)) {
      throw new TypeError(`live() takes one of ${COLLECTIONS.join(", ")}, not ${name}`);
    }
    this.name = name;
    /** The items as the server has them; `items` adds the pending writes. */
    this.items = new Map();
    this._key = name === "files" ? "stable_id" : "id";
    /** Versions of deleted items, so a late answer does not revive them. */
    this._tombstones = new Map();
    sb._live.add(this);
    sb._views.add(this);
    this.ready = this._start([name]);
  }

  /**
   * The items, with the writes waiting in the outbox applied and marked
   * `_pending: true` (a pending removal leaves the item out). The same Map
   * as the server's when nothing waits; else one made again on each change.
   * @type {Map<string, object>}
   */
  get items() {
    const pending = this._sb.outbox._for(this);
    if (!pending.length) return this._items;
    if (!this._shown) {
      const shown = new Map(this._items);
      for (const write of pending) showPending(shown, write);
      this._shown = shown;
    }
    return this._shown;
  }

  set items(items) {
    this._items = items;
    this._shown = null;
  }

  _emit(name, value) {
    if (name === "change") this._shown = null;
    super._emit(name, value);
  }

  _concerns(write) {
    return write.op.collection === this.name;
  }

  /** The outbox changed: show it if it concerns this collection. */
  _pendingChanged(writes) {
    if (writes.some((w) => this._concerns(w))) this._emit("change", { reason: "outbox" });
  }

  /** Replaces the items with a fresh snapshot; returns its cursor. */
  async _load() {
    const { body } = await this._sb._request("GET", "/api/sync", { query: { collections: this.name } });
    const section = body.collections[this.name] ?? { changed: [], deleted: [] };
    this.items = new Map(section.changed.map((item) => [item[this._key], item]));
    this._tombstones = new Map(section.deleted.map((t) => [t.id, t.version]));
    this.cursor = body.cursor;
    return body.cursor;
  }

  _apply(event) {
    this.cursor = Math.max(this.cursor ?? 0, event.id);
    const p = event.payload ?? {};
    const type = event.type;
    if (type === "files_deleted") {
      for (const id of p.stable_ids) this._remove(id, this._items.get(id)?.version ?? 0);
    } else if (type.endsWith("_created") || type.endsWith("_updated") || type === "file_saved") {
      const { changed, content, ...item } = p;
      this._merge(item);
    } else if (type.endsWith("_deleted")) {
      this._remove(p.id, p.version);
    } else if (type === "lock_acquired") {
      this._patchLock(p.stable_id, { locked_by: p.locked_by, lock_session_id: p.session_id, lock_expires_at: p.expires_at });
    } else if (type === "lock_released") {
      this._patchLock(p.stable_id, { locked_by: null, lock_session_id: null, lock_expires_at: null });
    } else if (["status_changed", "link_added", "link_removed", "comment_added"].includes(type)) {
      this._applyItemChange(event);
    }
    return true;
  }

  /** A full item (an event's, or a write's answer): kept if newer. */
  _merge(item) {
    const id = item[this._key];
    const held = this._items.get(id);
    const dead = this._tombstones.get(id);
    if (held && held.version >= item.version) return false;
    if (!held && dead !== undefined && dead >= item.version) return false;
    this._tombstones.delete(id);
    this._items.set(id, item);
    return true;
  }

  _remove(id, version) {
    this._items.delete(id);
    this._tombstones.set(id, Math.max(version ?? 0, this._tombstones.get(id) ?? 0));
  }

  _patchLock(id, lock) {
    const held = this._items.get(id);
    if (held) this._items.set(id, { ...held, ...lock });
  }

  /** A work-item event that carries the change, not the item. */
  _applyItemChange(event) {
    const p = event.payload;
    const held = this._items.get(p.id);
    if (held && p.version <= held.version) return;
    if (!held || p.version !== held.version + 1) {
      // Not the next version: fetch the item rather than guess.
      this._refetchItem(p.id);
      return;
    }
    const item = { ...held, version: p.version, updated_at: event.timestamp, updated_by: event.agent_id };
    if (event.type === "status_changed") item.status = p.new_status;
    if (event.type === "link_added") item.links = [...held.links, { linked_feature_id: p.linked_feature_id, link_type: p.link_type }];
    if (event.type === "link_removed") {
      item.links = held.links.filter((l) => !(l.linked_feature_id === p.linked_feature_id && l.link_type === p.link_type));
    }
    if (event.type === "comment_added") {
      // The server orders comments by time, then id (one group commit's share a time).
      const comment = { id: p.comment_id, comment_text: p.comment_text, author: p.author, created_at: event.timestamp };
      const key = (c) => [c.created_at, c.id];
      const after = (a, b) => key(a)[0] > key(b)[0] || (key(a)[0] === key(b)[0] && key(a)[1] > key(b)[1]);
      const at = held.comments.findIndex((c) => after(c, comment));
      item.comments = at < 0 ? [...held.comments, comment] : [...held.comments.slice(0, at), comment, ...held.comments.slice(at)];
    }
    this._items.set(p.id, item);
  }

  async _refetchItem(id) {
    try {
      const { body } = await this._sb._request("GET", `/api/${this.name}/${encodeURIComponent(id)}`);
      if (this._merge(body)) this._emit("change", { reason: "refetch" });
    } catch (error) {
      if (error.code !== "not_found") this._refetch();
    }
  }

  /** The version the server has of `id` (pending writes aside), or undefined. */
  version(id) {
    return this._items.get(id)?.version;
  }

  /** `{items, byId, cursor, loaded}`: `items` in the order held (the snapshot's, then new ones). */
  _makeSnapshot() {
    const items = [...this.items.values()];
    const byId = Object.create(null);
    for (const item of items) byId[item[this._key]] = item;
    return { items, byId, cursor: this.cursor, loaded: this.loaded };
  }

  close() {
    super.close();
    this._sb._live.delete(this);
    this._sb._views.delete(this);
  }
}

/**
 * One conversation, live: `.conversation` (its summary) and `.messages` (in
 * order), streaming messages growing delta by delta; the same text a late
 * joiner gets from the server.
 */
class LiveConversation extends LiveView {
  constructor(sb, id, { pageSize = 200 } = {}) {
    super(sb);
    this.id = id;
    this.conversation = null;
    /** The messages as the server has them; `messages` adds the pending ones. */
    this.messages = [];
    /** Messages this page sent from the outbox, shown until their event comes. */
    this._sent = new Map();
    this._pageSize = pageSize;
    sb._views.add(this);
    this.ready = this._start([`conversation:${id}`, "conversations"]);
  }

  /**
   * The messages in order, then the ones waiting in the outbox, marked
   * `_pending: true`. The same array as the server's when nothing waits.
   * @type {object[]}
   */
  get messages() {
    const pending = this._sb.outbox._for(this);
    if (!pending.length && !this._sent.size) return this._messages;
    if (!this._shown) {
      const held = new Set(this._messages.map((m) => m.id));
      for (const id of this._sent.keys()) if (held.has(id)) this._sent.delete(id);
      const sent = [...this._sent.values()];
      for (const m of sent) held.add(m.id);
      this._shown = [...this._messages, ...sent, ...pending.filter((w) => !held.has(w.op.id)).map(pendingMessage)];
    }
    return this._shown;
  }

  set messages(messages) {
    this._messages = messages;
    this._shown = null;
  }

  _emit(name, value) {
    if (name === "change") this._shown = null;
    super._emit(name, value);
  }

  _concerns(write) {
    return write.op.kind === "message" && write.op.conversation === this.id;
  }

  _pendingChanged(writes) {
    if (writes.some((w) => this._concerns(w))) this._emit("change", { reason: "outbox" });
  }

  /** A message this page sent from the outbox: shown (not pending) until its event comes. */
  _sentMessage(conversationId, message) {
    if (conversationId !== this.id || this._messages.some((m) => m.id === message.id)) return;
    this._sent.set(message.id, message);
    this._shown = null;
  }

  get _path() {
    return `/api/conversations/${encodeURIComponent(this.id)}`;
  }

  /** The summary and every message; returns the oldest cursor of the reads. */
  async _load() {
    const summary = await this._sb._request("GET", this._path);
    let cursor = Number(summary.headers.get("X-Event-Cursor"));
    const messages = [];
    let before = null;
    do {
      const query = { limit: String(this._pageSize) };
      if (before) query.before = before;
      const { body } = await this._sb._request("GET", `${this._path}/messages`, { query });
      messages.unshift(...body.messages);
      cursor = Math.min(cursor, body.cursor);
      before = body.next_before;
    } while (before);
    this.conversation = summary.body;
    this.messages = messages;
    this.cursor = cursor;
    return cursor;
  }

  /** The message with this id, or undefined. */
  message(id) {
    return this.messages.find((m) => m.id === id);
  }

  /** `{conversation, messages, cursor, loaded}` */
  _makeSnapshot() {
    return { conversation: this.conversation, messages: [...this.messages], cursor: this.cursor, loaded: this.loaded };
  }

  /** Applies one event; false when it concerns another conversation. */
  _apply(event) {
    const p = event.payload ?? {};
    this.cursor = Math.max(this.cursor ?? 0, event.id);
    if (event.channel === "conversations") {
      if (p.id !== this.id) return false;
      if (event.type === "conversation_deleted") this.conversation = { ...this.conversation, deleted: true, version: p.version };
      else if (!this.conversation || p.version > this.conversation.version) this.conversation = { ...this.conversation, ...p };
      return true;
    }
    switch (event.type) {
      case "message_created":
        if (!this._messages.some((m) => m.id === p.id)) this._messages.push(p);
        return true;
      case "message_delta":
        return this._delta(p);
      case "message_completed": {
        const i = this._messages.findIndex((m) => m.id === p.id);
        if (i < 0) this._messages.push(p);
        else this._messages[i] = p;
        return true;
      }
      case "tokens_updated":
        if (this.conversation) this.conversation = { ...this.conversation, input_tokens: p.input_tokens, output_tokens: p.output_tokens };
        return true;
      default:
        return true;
    }
  }

  /** Offsets count UTF-16 code units, which is what a JS string's length counts. */
  _delta({ message_id, offset, text }) {
    const i = this._messages.findIndex((m) => m.id === message_id);
    if (i < 0) {
      this._refetch();
      return false;
    }
    const message = this._messages[i];
    if (message.status !== "streaming" || offset + text.length <= message.content.length) return false;
    if (offset !== message.content.length) {
      // A gap (or an overlap that does not line up): read again, never guess.
      this._refetch();
      return false;
    }
    this._messages[i] = { ...message, content: message.content + text };
    return true;
  }

  /** Adds a message to this conversation; see `sb.conversations.send`. */
  send(message, options) {
    return this._sb.conversations.send(this.id, message, options);
  }

  close() {
    super.close();
    this._sb._views.delete(this);
  }
}

/** The sessions connected now, live: `.sessions` is a Map by session id. */
class LivePresence extends Observable {
  constructor(sb) {
    super();
    this._sb = sb;
    /** @type {Map<string, object>} */
    this.sessions = new Map();
    this.closed = false;
    /** True once `/api/sessions` was read. */
    this.loaded = false;
    this._refreshing = null;
    this._again = false;
    this._subscription = sb.subscribe({ channels: ["presence"], includeOwn: true }, () => this._refresh());
    this._offStatus = sb.on("status", (status) => {
      if (status === "live") this._refresh();
    });
    this.ready = this._refresh().then(() => this);
  }

  /** Reads `/api/sessions` again (once more if events came in meanwhile). */
  _refresh() {
    if (this._refreshing) {
      this._again = true;
      return this._refreshing;
    }
    this._refreshing = (async () => {
      do {
        this._again = false;
        try {
          const { body } = await this._sb._request("GET", "/api/sessions");
          this.sessions = new Map(body.sessions.map((s) => [s.session_id, s]));
          this.loaded = true;
          this._emit("change", { reason: "presence" });
        } catch (error) {
          this._sb._emit("error", error);
        }
      } while (this._again && !this.closed);
      this._refreshing = null;
    })();
    return this._refreshing;
  }

  /** `{sessions, loaded}`: `sessions` as `/api/sessions` lists them. */
  _makeSnapshot() {
    return { sessions: [...this.sessions.values()], loaded: this.loaded };
  }

  close() {
    this.closed = true;
    this._offStatus();
    this._subscription.close();
  }
}

/** `sb.features`, `sb.tracks`, `sb.spikes`: the writes and reads of one collection. */
class WorkItems {
  constructor(sb, name) {
    this._sb = sb;
    this.name = name;
  }

  _path(id, rest = "") {
    return `/api/${this.name}` + (id == null ? "" : `/${encodeURIComponent(id)}`) + rest;
  }

  /** Lists the items (`{status, track_id, tag, updated_since_id}` filters). */
  async list(filters = {}) {
    return (await this._sb._request("GET", this._path(), { query: filters })).body;
  }

  async get(id) {
    return this._sb._resource(this.name, (await this._sb._request("GET", this._path(id))).body);
  }

  /**
   * Creates an item: `{id?, title, status?, description?, priority?, tags?, track_id?}`.
   * Without an `id` the client makes one as the server would (`feat-…`), so
   * that a queued create is shown, and can be changed, under its final id.
   */
  async create(fields, options = {}) {
    const id = fields.id ?? (this._sb._queueable(options) ? ID_PREFIX[this.name] + randomHex(8) : undefined);
    return this._write("POST", null, "", id === undefined ? fields : { ...fields, id }, options, { kind: "create", id });
  }

  /**
   * A partial update. Sends `If-Match` with the version held (a live
   * collection's, else the last answer seen) unless `options.ifMatch` says
   * otherwise (`false` for none).
   */
  async update(id, fields, options = {}) {
    return this._write("PATCH", id, "", fields, options, { kind: "update", id }, true);
  }

  async setStatus(id, newStatus, options = {}) {
    return this._write("POST", id, "/status", { new_status: newStatus }, options, { kind: "status", id });
  }

  async link(id, linkedId, linkType = "relates_to", options = {}) {
    const body = { linked_feature_id: linkedId, link_type: linkType };
    return this._write("POST", id, "/links", body, options, { kind: "link", id });
  }

  async unlink(id, linkedId, linkType, options = {}) {
    const query = linkType ? `?link_type=${encodeURIComponent(linkType)}` : "";
    const op = { kind: "unlink", id, linkedId, linkType: linkType ?? null };
    return this._write("DELETE", id, `/links/${encodeURIComponent(linkedId)}${query}`, undefined, options, op);
  }

  async comment(id, text, options = {}) {
    return this._write("POST", id, "/comments", { comment_text: text }, options, { kind: "comment", id });
  }

  async remove(id, options = {}) {
    return this._write("DELETE", id, "", undefined, options, { kind: "remove", id });
  }

  async _write(method, id, rest, body, options, op, versioned = false) {
    const ifMatch = versioned ? this._sb._ifMatch(this.name, op.id, options) : options.ifMatch || null;
    const answer = await this._sb._send(method, this._path(id, rest), { body, ifMatch, options, op: { collection: this.name, ...op } });
    return this._sb._resource(this.name, answer);
  }
}

/** A lock on a file, renewed before it runs out until `release()`. */
class Lease {
  constructor(files, stableId, ttlSeconds, onLost) {
    this._files = files;
    this._sb = files._sb;
    this.stableId = stableId;
    this.ttlSeconds = ttlSeconds;
    this.onLost = onLost ?? null;
    this.held = false;
    this.lock = null;
    this.expiresAt = null;
    this._timer = null;
    this._subscription = null;
    this._renewedAt = 0;
  }

  async _acquire() {
    await this._renew();
    this.held = true;
    this._sb._leases.add(this);
    // Any lock event of another session on this file (or its deletion)
    // makes the lease ask the server who holds the file now.
    this._subscription = this._sb.subscribe({ channels: ["files"] }, (event) => this._onEvent(event));
    this._schedule(this.ttlSeconds * 500);
    return this;
  }

  async _renew() {
    const { body } = await this._sb._request("POST", this._files._path(this.stableId, "/lock"), { body: { ttl_seconds: this.ttlSeconds } });
    this.lock = body;
    this.expiresAt = new Date(body.expires_at);
    this._renewedAt = Date.now();
  }

  /** Renews halfway through each term (timed by this clock, not the server's). */
  _schedule(delay) {
    clearTimeout(this._timer);
    if (this.held) this._timer = setTimeout(() => this._tick(), Math.max(50, delay));
  }

  async _tick() {
    if (!this.held) return;
    const term = this.ttlSeconds * 1000;
    try {
      await this._renew();
      this._schedule(term / 2);
    } catch (error) {
      const gone = ["lock_held", "lock_required", "not_found", "conflict"].includes(error.code);
      if (gone || Date.now() - this._renewedAt >= term) {
        this._lost(gone ? error.code : "expired", error);
        return;
      }
      // Unavailable, rate limited or offline: try again soon, within the term.
      this._sb._emit("error", error);
      this._schedule(Math.min(1000, term / 4));
    }
  }

  _onEvent(event) {
    const p = event.payload ?? {};
    const here = event.type === "resync" || p.stable_id === this.stableId || (p.stable_ids ?? []).includes(this.stableId);
    if (here && this.held) this._verify();
  }

  async _verify() {
    try {
      const file = await this._files.get(this.stableId);
      if (this.held && file.lock_session_id !== this._sb.sessionId) this._lost(file.locked_by ? "taken" : "released");
    } catch (error) {
      if (error.code === "not_found") this._lost("deleted", error);
    }
  }

  _lost(reason, error) {
    if (!this.held) return;
    this._stop();
    const info = { stableId: this.stableId, reason, error };
    this._sb._emit("lockLost", info);
    if (this.onLost) this.onLost(info);
  }

  _stop() {
    this.held = false;
    clearTimeout(this._timer);
    this._subscription?.close();
    this._sb._leases.delete(this);
  }

  /** Saves the file's content with this lease (and `If-Match`). */
  save(content, options) {
    return this._files.save(this.stableId, content, options);
  }

  /** Releases the lock; resolves when the server has released it. */
  async release() {
    if (!this.held) return;
    this._stop();
    try {
      await this._sb._request("DELETE", this._files._path(this.stableId, "/lock"));
    } catch (error) {
      // Already expired or taken: it is released either way.
      if (!["conflict", "lock_held", "lock_required", "not_found"].includes(error.code)) throw error;
    }
  }

  /**
   * On `pagehide`: a request that outlives the page. If the page comes back
   * (the back/forward cache), `onLost` says the lease is gone.
   */
  _releaseOnExit() {
    if (!this.held) return;
    this._lost("page_hidden");
    const headers = this._sb._headers(this._sb._lastToken);
    fetch(this._sb._url(this._files._path(this.stableId, "/lock")), { method: "DELETE", headers, keepalive: true }).catch(() => {});
  }
}

/** `sb.files`: shared files, their versions and locks. */
class Files {
  constructor(sb) {
    this._sb = sb;
  }

  _path(id, rest = "") {
    return "/api/files" + (id == null ? "" : `/${encodeURIComponent(id)}`) + rest;
  }

  async list() {
    return (await this._sb._request("GET", this._path())).body;
  }

  /** A file with its content. */
  async get(stableId) {
    return this._sb._resource("files", (await this._sb._request("GET", this._path(stableId))).body);
  }

  async versions(stableId) {
    return (await this._sb._request("GET", this._path(stableId, "/versions"))).body;
  }

  async version(stableId, n) {
    return (await this._sb._request("GET", this._path(stableId, `/versions/${n}`))).body;
  }

  /**
   * Creates a file: `{stable_id?, name, content, label?, derived_from?}`;
   * without a `stable_id` the client makes one as the server would.
   */
  async create(file, options = {}) {
    const id = file.stable_id ?? (this._sb._queueable(options) ? ID_PREFIX.files + randomHex(8) : undefined);
    const body = id === undefined ? file : { ...file, stable_id: id };
    const answer = await this._sb._send("POST", this._path(), { body, options, op: { collection: "files", kind: "create", id } });
    return this._sb._resource("files", answer);
  }

  /**
   * Saves new content. This session must hold the lock (see `lock`); sends
   * `If-Match` with the version held unless `options.ifMatch` says otherwise.
   */
  async save(stableId, content, options = {}) {
    const ifMatch = this._sb._ifMatch("files", stableId, options);
    const { body } = await this._sb._request("PUT", this._path(stableId), { body: { content }, ifMatch, idempotencyKey: options.idempotencyKey });
    return this._sb._resource("files", body);
  }

  /** Deletes one file (this session must hold its lock) or several, all or nothing. */
  async remove(stableIds) {
    const ids = list(stableIds);
    const { body } = ids.length === 1
      ? await this._sb._request("DELETE", this._path(ids[0]))
      : await this._sb._request("POST", this._path(null, "/delete"), { body: { stable_ids: ids } });
    return body;
  }

  /**
   * Locks a file for this session and keeps the lock: the lease renews
   * itself halfway through each term, calls `onLost` if the server released
   * it or another session took it, and is released when the page goes away.
   * A lock held by another session rejects with `SwitchboardError` code
   * `lock_held` (`details.locked_by`, `details.lock_expires_at`).
   */
  lock(stableId, { ttlSeconds = 60, onLost } = {}) {
    return new Lease(this, stableId, ttlSeconds, onLost)._acquire();
  }
}

/** `sb.conversations`: conversations and their messages. */
class Conversations {
  constructor(sb) {
    this._sb = sb;
  }

  _path(id, rest = "") {
    return "/api/conversations" + (id == null ? "" : `/${encodeURIComponent(id)}`) + rest;
  }

  async list() {
    return (await this._sb._request("GET", this._path())).body;
  }

  async get(id) {
    return (await this._sb._request("GET", this._path(id))).body;
  }

  /** `{id?, title}`; without an `id` the client makes one as the server would. */
  async create(conversation, options = {}) {
    const id = conversation.id ?? (this._sb._queueable(options) ? ID_PREFIX.conversations + randomHex(8) : undefined);
    const body = id === undefined ? conversation : { ...conversation, id };
    const answer = await this._sb._send("POST", this._path(), { body, options, op: { collection: "conversations", kind: "create", id } });
    return this._sb._resource("conversations", answer);
  }

  async rename(id, title, options = {}) {
    const ifMatch = this._sb._ifMatch("conversations", id, options);
    const op = { collection: "conversations", kind: "update", id };
    return this._sb._resource("conversations", await this._sb._send("PATCH", this._path(id), { body: { title }, ifMatch, options, op }));
  }

  async remove(id, options = {}) {
    const op = { collection: "conversations", kind: "remove", id };
    return this._sb._resource("conversations", await this._sb._send("DELETE", this._path(id), { options, op }));
  }

  /**
   * Adds a message: `{id?, role, content?, status?: "streaming"|"complete", usage?}`;
   * without an `id` the client makes one as the server would (`msg-…`).
   */
  async send(conversationId, message, options = {}) {
    const id = message.id ?? (this._sb._queueable(options) ? "msg-" + randomHex(8) : undefined);
    const body = id === undefined ? message : { ...message, id };
    const op = { kind: "message", conversation: conversationId, id };
    return this._sb._send("POST", this._path(conversationId, "/messages"), { body, options, op });
  }

  /** Appends text to a streaming message; answers `{message_id, offset, length}`. */
  async appendDelta(conversationId, messageId, text, options = {}) {
    const path = this._path(conversationId, `/messages/${encodeURIComponent(messageId)}/delta`);
    return this._sb._send("POST", path, { body: { text }, options, op: { kind: "delta", conversation: conversationId, id: messageId } });
  }

  /** Completes a streaming message, with `{input_tokens, output_tokens}` if known. */
  async complete(conversationId, messageId, usage, options = {}) {
    const path = this._path(conversationId, `/messages/${encodeURIComponent(messageId)}/complete`);
    const op = { kind: "complete", conversation: conversationId, id: messageId };
    return this._sb._send("POST", path, { body: usage ? { usage } : {}, options, op });
  }
}

/** `sb.events`: the log. */
class Events {
  constructor(sb) {
    this._sb = sb;
  }

  /** `{after, before, limit, channels, type, resource_id, agent_id, session_id, order}` */
  async list(filters = {}) {
    return (await this._sb._request("GET", "/api/events", { query: filters })).body;
  }

  async get(id) {
    return (await this._sb._request("GET", `/api/events/${id}`)).body;
  }
}

/** Subscriptions on channels (webhooks that wake workers, pull subscriptions). */
class Subscriptions {
  constructor(sb) {
    this._sb = sb;
  }

  _path(id, rest = "") {
    return `/api/subscriptions/${encodeURIComponent(id)}${rest}`;
  }

  async list() {
    return (await this._sb._request("GET", "/api/subscriptions")).body;
  }

  async get(id) {
    return (await this._sb._request("GET", this._path(id))).body;
  }

  /** Makes or changes one: `{channels, types?, webhook?: {url}, kind?, batch_size?, lease_seconds?, start?, description?}`. */
  async put(id, body) {
    return (await this._sb._request("PUT", this._path(id), { body })).body;
  }

  async delete(id) {
    await this._sb._request("DELETE", this._path(id));
  }

  /** A waiting webhook tries again now. */
  async retry(id) {
    return (await this._sb._request("POST", this._path(id, "/retry"))).body;
  }

  /** `{worker?, max?, lease_seconds?, wait_seconds?}` → `{claim, events}`. */
  async claim(id, options = {}) {
    return (await this._sb._request("POST", this._path(id, "/claims"), { body: options })).body;
  }

  async ack(id, claimId) {
    return (await this._sb._request("POST", this._path(id, `/claims/${encodeURIComponent(claimId)}/ack`))).body;
  }

  async release(id, claimId) {
    await this._sb._request("POST", this._path(id, `/claims/${encodeURIComponent(claimId)}/release`));
  }
}

// ---- the outbox ----------------------------------------------------------

/** Writes in the order they were queued (`seq`, then `id`). */
function bySeq(a, b) {
  return a.seq - b.seq || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * Is a queued write's failure a passing one, tried again later? The
 * network, 5xx, 408 and 429 are; so is 401, which a token function that has
 * refreshed its token meanwhile answers. Any other answer refuses the write.
 */
function passing(error) {
  const status = error?.status ?? 0;
  return status === 0 || status === 401 || status === 408 || status === 429 || status >= 500;
}

/** An error as plain data, for IndexedDB and the other tabs. */
function errorInfo(error) {
  return {
    status: error?.status ?? 0,
    code: error?.code ?? "network_error",
    message: String(error?.message ?? error),
    details: error?.details ?? {},
  };
}

function toError(info) {
  return new SwitchboardError(info.status, info.code, info.message, info.details);
}

/** A queued write's body, parsed (`{}` when it has none). */
function bodyOf(write) {
  return write.bodyText == null ? {} : JSON.parse(write.bodyText);
}

/** A queued write as the app sees it in `sb.outbox.list()`. */
function publicWrite(write) {
  return Object.freeze({
    id: write.id,
    method: write.method,
    path: write.path,
    body: write.bodyText == null ? null : JSON.parse(write.bodyText),
    ifMatch: write.ifMatch,
    idempotencyKey: write.idempotencyKey,
    sessionId: write.sessionId,
    collection: write.op.collection ?? null,
    kind: write.op.kind,
    resourceId: write.op.id ?? null,
    queuedAt: write.createdAt,
    state: write.state,
    attempts: write.attempts,
    lastError: write.lastError,
  });
}

/** A hex digest of `text`, to tell tokens apart without keeping one. */
async function digest(text) {
  const bytes = new TextEncoder().encode(text);
  if (globalThis.crypto?.subtle) {
    const hash = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
    return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  // Not a secure context (no WebCrypto): FNV-1a twice, 64 bits.
  let a = 0x811c9dc5;
  let b = 0x5bd1e995;
  for (const byte of bytes) {
    a = Math.imul(a ^ byte, 0x01000193) >>> 0;
    b = Math.imul(b ^ byte, 0x01000193) >>> 0;
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

/** A created resource as the server would make it, shown until its answer comes. */
function createdResource(collection, write) {
  const fields = bodyOf(write);
  const by = write.op.agent;
  const meta = { version: 0, created_at: write.createdAt, updated_at: write.createdAt, created_by: by, updated_by: by };
  if (collection === "files") {
    const { content, ...rest } = fields;
    const size = new TextEncoder().encode(content ?? "").length;
    return { name: "", label: null, derived_from: null, size, ...rest, ...meta, locked_by: null, lock_session_id: null, lock_expires_at: null };
  }
  if (collection === "conversations") return { title: "", message_count: 0, input_tokens: 0, output_tokens: 0, ...fields, ...meta };
  const item = { title: "", status: "todo", description: null, links: [], comments: [] };
  if (collection !== "tracks") Object.assign(item, { priority: "medium", tags: [], track_id: null });
  if (collection === "spikes") item.findings = null;
  return { ...item, ...fields, ...meta };
}

/**
 * Shows a queued write in a collection's `items` as the server would apply
 * it, marked `_pending: true`. A removal leaves the item out; a change to
 * an item not held shows nothing.
 */
function showPending(items, write) {
  const { op } = write;
  const held = items.get(op.id);
  const fields = bodyOf(write);
  let shown = null;
  switch (op.kind) {
    case "create":
      shown = held ?? createdResource(op.collection, write);
      break;
    case "update":
      if (held) shown = { ...held, ...fields };
      break;
    case "status":
      if (held) shown = { ...held, status: fields.new_status };
      break;
    case "link": {
      if (!held) break;
      const links = held.links ?? [];
      const same = (l) => l.linked_feature_id === fields.linked_feature_id && l.link_type === fields.link_type;
      const link = { linked_feature_id: fields.linked_feature_id, link_type: fields.link_type };
      shown = { ...held, links: links.some(same) ? links : [...links, link] };
      break;
    }
    case "unlink":
      if (held) {
        const gone = (l) => l.linked_feature_id === op.linkedId && (op.linkType == null || l.link_type === op.linkType);
        shown = { ...held, links: (held.links ?? []).filter((l) => !gone(l)) };
      }
      break;
    case "comment":
      if (held) {
        const comment = { id: `pending-${write.id}`, comment_text: fields.comment_text, author: op.agent, created_at: write.createdAt, _pending: true };
        shown = { ...held, comments: [...(held.comments ?? []), comment] };
      }
      break;
    case "remove":
      items.delete(op.id);
      return;
    default:
      return;
  }
  if (shown) items.set(op.id, { ...shown, _pending: true });
}

/** A queued message as its conversation shows it until it is sent. */
function pendingMessage(write) {
  const m = bodyOf(write);
  return {
    id: write.op.id,
    conversation_id: write.op.conversation,
    role: m.role,
    content: m.content ?? "",
    status: m.status ?? "complete",
    usage: m.usage ?? null,
    created_at: write.createdAt,
    updated_at: write.createdAt,
    created_by: write.op.agent,
    _pending: true,
  };
}

/**
 * The outbox in IndexedDB: it survives reloads and is shared by the tabs of
 * the origin. Each method is one transaction, so `claim` (about to send) and
 * `cancel` exclude each other, across tabs too.
 */
class IdbStore {
  static open() {
    return new Promise((resolve, reject) => {
      const request = globalThis.indexedDB.open(OUTBOX_DB, 1);
      request.onupgradeneeded = () => {
        request.result.createObjectStore(OUTBOX_STORE, { keyPath: "id" }).createIndex("scope", "scope");
      };
      request.onsuccess = () => resolve(new IdbStore(request.result));
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("the outbox's database is blocked by another tab"));
    });
  }

  constructor(db) {
    this._db = db;
    db.onversionchange = () => db.close();
  }

  /** Runs `fn(store, done)`; resolves with what it passed to `done` once committed. */
  _tx(mode, fn) {
    return new Promise((resolve, reject) => {
      let result;
      const tx = this._db.transaction(OUTBOX_STORE, mode);
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("an outbox transaction was aborted"));
      fn(tx.objectStore(OUTBOX_STORE), (value) => {
        result = value;
      });
    });
  }

  /** The writes of one scope, in order. */
  all(scope) {
    return this._tx("readonly", (store, done) => {
      const request = store.index("scope").getAll(scope);
      request.onsuccess = () => done(request.result.sort(bySeq));
    });
  }

  add(write) {
    return this._tx("readwrite", (store) => store.put(write));
  }

  /** Changes a write if it is still there. */
  update(id, change) {
    return this._tx("readwrite", (store) => {
      const request = store.get(id);
      request.onsuccess = () => {
        if (request.result) store.put({ ...request.result, ...change });
      };
    });
  }

  /** Marks a write as being sent and answers it as stored; null once it is gone. */
  claim(id) {
    return this._tx("readwrite", (store, done) => {
      const request = store.get(id);
      request.onsuccess = () => {
        const write = request.result;
        if (!write) return done(null);
        write.state = "sending";
        store.put(write);
        done(write);
      };
    });
  }

  remove(id) {
    return this._tx("readwrite", (store) => store.delete(id));
  }

  /** Removes a write unless it is being sent; true when it was removed. */
  cancel(id) {
    return this._tx("readwrite", (store, done) => {
      const request = store.get(id);
      request.onsuccess = () => {
        if (!request.result || request.result.state === "sending") return done(false);
        store.delete(id);
        done(true);
      };
    });
  }
}

/** The outbox where IndexedDB is missing or refused: this page's only, gone on reload. */
class MemoryStore {
  constructor() {
    this._writes = new Map();
  }

  async all() {
    return [];
  }

  async add(write) {
    this._writes.set(write.id, JSON.parse(JSON.stringify(write)));
  }

  async update(id, change) {
    const write = this._writes.get(id);
    if (write) Object.assign(write, change);
  }

  async claim(id) {
    const write = this._writes.get(id);
    if (!write) return null;
    write.state = "sending";
    return JSON.parse(JSON.stringify(write));
  }

  async remove(id) {
    this._writes.delete(id);
  }

  async cancel(id) {
    const write = this._writes.get(id);
    if (!write || write.state === "sending") return false;
    this._writes.delete(id);
    return true;
  }
}

/**
 * `sb.outbox`: the writes waiting for the server. Its promises:
 *
 * 1. A write is queued when the server cannot be reached (the request
 *    failed on the network, or the page is known to be offline), and when
 *    writes are queued already: it waits behind them. The caller's promise
 *    resolves once the write is stored, with the change as it is shown.
 * 2. Queued writes are sent one at a time in the order they were queued,
 *    each once the one before is answered, by one tab at a time (a Web Lock
 *    per outbox), each with the `Idempotency-Key` it was queued with: a
 *    repeat of a write that did reach the server is answered from the
 *    server's record, so each applies once.
 * 3. The network, 5xx, 408, 429 and 401 keep the write first in line; it is
 *    tried again after 0.5 s, doubling to 5 s. Any other answer refuses it:
 *    it leaves the outbox, its pending change leaves the views, and
 *    `outbox:rejected` says why. The writes after it go on.
 * 4. Sending and `cancel` exclude each other (one IndexedDB transaction
 *    each): a cancelled write is never sent; one being sent cannot be
 *    cancelled.
 * 5. An `If-Match` with the version held, taken while earlier writes to the
 *    same resource were queued, meant "as the page showed it": it is
 *    replaced by the version the last of them is answered with.
 *
 * The writes of an outbox are those of one server, agent id, string token
 * (by its digest) and `name`; tabs with the same share it and show each
 * other's pending writes (BroadcastChannel).
 */
class Outbox {
  constructor(sb, options) {
    this._sb = sb;
    /** False with `outbox: false`: writes fail as they did, nothing is kept. */
    this.enabled = options !== false;
    const { storage = "indexeddb", name = "" } = options && typeof options === "object" ? options : {};
    this._wanted = storage;
    this._name = name;
    /** Where the writes are kept: `"indexeddb"`, `"memory"` or `"none"`; null until `ready`. */
    this.storage = this.enabled ? null : "none";
    this.scope = null;
    this.closed = false;
    /** The writes, in order. */
    this._writes = [];
    /** Writes being stored, not yet in `_writes`. */
    this._adding = [];
    /** Writes another tab sent or cancelled while this one was about to. */
    this._vanished = new Set();
    this._list = null;
    this._listeners = new Set();
    this._outcomes = new Map();
    this._waiters = new Map();
    this._store = null;
    this._channel = null;
    this._pumping = false;
    this._timer = null;
    this._backoff = BACKOFF_FIRST;
    this._seq = 0;
    // Passed bare, as `useSyncExternalStore(sb.outbox.subscribe, sb.outbox.getSnapshot)` does.
    this.subscribe = this.subscribe.bind(this);
    this.getSnapshot = this.getSnapshot.bind(this);
    /** Resolves once the writes kept from earlier pages are loaded (and being sent). */
    this.ready = this.enabled ? this._open() : Promise.resolve();
  }

  async _open() {
    const sb = this._sb;
    const credential = typeof sb.token === "string" ? `token:${await digest(sb.token)}` : "";
    this.scope = [sb.url, sb.agentId ?? "", credential, this._name].join("|");
    let store = null;
    if (this._wanted === "indexeddb" && globalThis.indexedDB) {
      try {
        store = await IdbStore.open();
      } catch (error) {
        sb._emit("error", error);
      }
    }
    this._store = store ?? new MemoryStore();
    this.storage = store ? "indexeddb" : "memory";
    if (store && globalThis.BroadcastChannel) {
      this._channel = new BroadcastChannel(`${OUTBOX_DB}|${this.scope}`);
      this._channel.onmessage = (message) => this._onMessage(message.data);
    }
    let kept = [];
    try {
      kept = await this._store.all(this.scope);
    } catch (error) {
      sb._emit("error", error);
    }
    for (const write of kept) this._insert(write);
    if (kept.length) {
      this._changed(kept);
      this._kick();
    }
  }

  /** How many writes wait. */
  get size() {
    return this._writes.length;
  }

  /** The writes waiting, oldest first: a frozen array, the same until the outbox changes. */
  list() {
    if (!this._list) this._list = Object.freeze(this._writes.map(publicWrite));
    return this._list;
  }

  /** `list()`, for `useSyncExternalStore` and stores. */
  getSnapshot() {
    return this.list();
  }

  /** Calls `listener()` whenever `list()` changes; returns the function that stops it. */
  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /**
   * Cancels a write that waits: it is never sent and its pending change
   * leaves the views. Resolves to false when it is being sent or already
   * answered.
   */
  async cancel(id) {
    await this.ready;
    if (!this._writes.some((w) => w.id === id)) return false;
    if (!(await this._store.cancel(id))) return false;
    this._post({ type: "cancelled", id });
    this._cancelled(id);
    return true;
  }

  /** Cancels every write that waits (a log-out, say); resolves to how many. */
  async clear() {
    await this.ready;
    let cancelled = 0;
    for (const write of [...this._writes]) if (await this.cancel(write.id)) cancelled++;
    return cancelled;
  }

  /**
   * Resolves with the server's answer to a queued write once it is sent;
   * rejects with the refusal's `SwitchboardError` (code `cancelled` when it
   * was cancelled).
   */
  sent(id) {
    return this.ready.then(() => {
      const outcome = this._outcomes.get(id);
      if (outcome) return outcome.error ? Promise.reject(toError(outcome.error)) : outcome.result;
      if (!this._writes.some((w) => w.id === id)) {
        return Promise.reject(new SwitchboardError(0, "not_found", `no write ${id} in the outbox`, {}));
      }
      return new Promise((resolve, reject) => {
        if (!this._waiters.has(id)) this._waiters.set(id, []);
        this._waiters.get(id).push({ resolve, reject });
      });
    });
  }

  /** Writes wait or are being stored: a new one goes behind them. */
  _busy() {
    return this._writes.length > 0 || this._adding.length > 0;
  }

  /** Queues a write; answers what its caller gets (the change as shown, marked pending). */
  async _queue(spec, error) {
    this._seq = Math.max(Date.now() * 1000, this._seq + 1);
    const write = {
      ...spec,
      id: `ob-${randomHex(8)}`,
      scope: this.scope,
      seq: this._seq,
      createdAt: new Date().toISOString(),
      state: "queued",
      attempts: error ? 1 : 0,
      lastError: error ? errorInfo(error) : null,
      ifMatchAfter: null,
    };
    const { collection, id } = write.op;
    if (write.ifMatch != null && COLLECTIONS.includes(collection) && write.ifMatch === this._sb._ifMatch(collection, id, {})) {
      for (const w of [...this._writes, ...this._adding]) {
        if (w.op.collection === collection && w.op.id === id) write.ifMatchAfter = w.id;
      }
    }
    // Stored before it can be sent: the sender claims writes from the store.
    // A write that cannot be stored (a full disk) fails as it would have
    // without an outbox.
    this._adding.push(write);
    try {
      await this._store.add(write);
    } catch (failure) {
      this._sb._emit("error", failure);
      throw error ?? new SwitchboardError(0, "network_error", `${spec.method} ${spec.path}: the server cannot be reached`, {});
    } finally {
      this._adding.splice(this._adding.indexOf(write), 1);
    }
    this._insert(write);
    this._changed([write]);
    this._post({ type: "queued", write });
    this._sb._emit("outbox:queued", { write: publicWrite(write) });
    this._kick();
    return this._shown(write);
  }

  /** What the caller of a queued write gets: the change as the views show it, marked pending. */
  _shown(write) {
    const { op } = write;
    const mark = { _pending: true, _outboxId: write.id };
    if (op.kind === "message") return { ...pendingMessage(write), ...mark };
    const pendingEvent = (e, channel) => ({
      id: null,
      channel,
      type: e.type,
      resource_type: e.resource_type ?? null,
      resource_id: e.resource_id ?? null,
      agent_id: op.agent,
      session_id: write.sessionId,
      timestamp: write.createdAt,
      payload: e.data ?? {},
    });
    if (op.kind === "publish") return { ...pendingEvent(bodyOf(write), op.channel), ...mark };
    if (op.kind === "publish_batch") return { events: bodyOf(write).events.map((e) => pendingEvent(e, e.channel)), ...mark };
    if (!op.collection || op.id == null) return mark;
    const key = op.collection === "files" ? "stable_id" : "id";
    if (op.kind === "remove") return { [key]: op.id, deleted: true, ...mark };
    for (const live of this._sb._live) {
      if (live.name === op.collection && live.items.has(op.id)) return { ...live.items.get(op.id), ...mark };
    }
    const items = new Map();
    showPending(items, write);
    return { ...(items.get(op.id) ?? { [key]: op.id, ...bodyOf(write) }), ...mark };
  }

  /** Adds (or refreshes) a write in order. */
  _insert(write) {
    const held = this._writes.find((w) => w.id === write.id);
    if (held) {
      Object.assign(held, write);
      return;
    }
    this._seq = Math.max(this._seq, write.seq);
    let at = this._writes.length;
    while (at > 0 && bySeq(this._writes[at - 1], write) > 0) at--;
    this._writes.splice(at, 0, write);
  }

  _drop(id) {
    const at = this._writes.findIndex((w) => w.id === id);
    return at < 0 ? null : this._writes.splice(at, 1)[0];
  }

  /** The writes that `view` shows. */
  _for(view) {
    return this._writes.filter((w) => view._concerns(w));
  }

  /** The list changed: the views these writes concern show it, listeners hear of it. */
  _changed(writes) {
    this._list = null;
    for (const view of [...this._sb._views]) view._pendingChanged(writes);
    for (const listener of [...this._listeners]) {
      try {
        listener();
      } catch (error) {
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  /** Try now: the server answered, the stream is live, or the browser is online again. */
  _retryNow() {
    this._backoff = BACKOFF_FIRST;
    this._kick();
  }

  /** Starts sending, unless this tab is already sending or nothing waits. */
  _kick() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this.closed || this._pumping || !this._writes.length) return;
    this._pumping = true;
    const locks = this.storage === "indexeddb" ? globalThis.navigator?.locks : null;
    const pump = () => this._pump();
    const running = locks ? locks.request(`${OUTBOX_DB}|${this.scope}`, pump) : pump();
    running.then(
      (retryIn) => {
        this._pumping = false;
        if (retryIn == null) this._kick();
        else if (!this.closed) this._timer = setTimeout(() => this._kick(), retryIn);
      },
      (error) => {
        this._pumping = false;
        this._sb._emit("error", error);
        if (!this.closed) this._timer = setTimeout(() => this._kick(), BACKOFF_MAX);
      },
    );
  }

  /** Sends the writes in order; answers a delay when the first must be tried again later. */
  async _pump() {
    while (!this.closed && this._writes.length) {
      const first = this._writes[0];
      const write = await this._store.claim(first.id);
      if (!write) {
        // Another tab sent or cancelled it; its message tells the outcome.
        this._drop(first.id);
        this._vanished.add(first.id);
        this._changed([first]);
        continue;
      }
      this._insert(write);
      this._changed([]);
      let answer;
      try {
        answer = await this._sb._request(write.method, write.path, {
          bodyText: write.bodyText ?? undefined,
          ifMatch: write.ifMatch,
          idempotencyKey: write.idempotencyKey,
          sessionId: write.sessionId,
          attempts: 1,
        });
      } catch (error) {
        if (!passing(error)) {
          await this._finish(write, { error: errorInfo(error) });
          continue;
        }
        const change = { state: "queued", attempts: write.attempts + 1, lastError: errorInfo(error) };
        await this._store.update(write.id, change);
        this._insert({ ...write, ...change });
        this._changed([]);
        this._post({ type: "changed", write: { ...write, ...change } });
        if (error.status) this._sb._emit("error", error);
        const delay = this._backoff * (0.75 + Math.random() / 2);
        this._backoff = Math.min(this._backoff * 2, BACKOFF_MAX);
        return delay;
      }
      this._backoff = BACKOFF_FIRST;
      await this._finish(write, { result: answer.body });
    }
    return null;
  }

  /** A write answered here: out of the store, later `If-Match`es moved on, every tab told. */
  async _finish(write, outcome) {
    await this._store.remove(write.id);
    const version = outcome.result?.version;
    if (typeof version === "number") {
      for (const later of this._writes) {
        if (later.ifMatchAfter === write.id) await this._store.update(later.id, { ifMatch: version, ifMatchAfter: null });
      }
    }
    this._post({ type: "settled", id: write.id, write, ...outcome });
    this._settle(write.id, outcome, write);
  }

  /** A write was answered (here or in another tab): out of the list, its answer into the views, the app told. */
  _settle(id, { result, error }, sentWrite) {
    const held = this._drop(id);
    const write = held ?? (this._vanished.delete(id) ? sentWrite : null);
    if (!write) return;
    if (typeof result?.version === "number") {
      for (const later of this._writes) {
        if (later.ifMatchAfter !== id) continue;
        later.ifMatch = result.version;
        later.ifMatchAfter = null;
      }
    }
    // A refused `If-Match` comes with the current resource: show it at once.
    this._sb._answered(write.op, result ?? (error?.status === 412 ? error.details?.current : null));
    this._changed([write]);
    this._remember(id, { result, error });
    if (error) this._sb._emit("outbox:rejected", { write: publicWrite(write), error: toError(error) });
    else this._sb._emit("outbox:sent", { write: publicWrite(write), result });
  }

  _cancelled(id) {
    const write = this._drop(id);
    if (!write) return;
    this._changed([write]);
    const message = `${write.method} ${write.path} was cancelled`;
    this._remember(id, { error: { status: 0, code: "cancelled", message, details: {} } });
    this._sb._emit("outbox:cancelled", { write: publicWrite(write) });
  }

  _remember(id, outcome) {
    this._outcomes.set(id, outcome);
    if (this._outcomes.size > OUTCOMES_KEPT) this._outcomes.delete(this._outcomes.keys().next().value);
    for (const { resolve, reject } of this._waiters.get(id) ?? []) {
      if (outcome.error) reject(toError(outcome.error));
      else resolve(outcome.result);
    }
    this._waiters.delete(id);
  }

  /** Tells the other tabs of this outbox. */
  _post(message) {
    try {
      this._channel?.postMessage(message);
    } catch (error) {
      this._sb._emit("error", error);
    }
  }

  _onMessage(message) {
    if (this.closed || !message) return;
    if (message.type === "queued" || message.type === "changed") {
      const known = this._writes.some((w) => w.id === message.write.id);
      if (message.type === "changed" && !known) return;
      this._insert(message.write);
      this._changed(known ? [] : [message.write]);
      // If the tab that queued it goes away, this one sends it.
      if (message.type === "queued") this._kick();
    } else if (message.type === "settled") {
      this._settle(message.id, message, message.write);
    } else if (message.type === "cancelled") {
      this._cancelled(message.id);
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this._timer);
    this._channel?.close();
  }
}

/**
 * A client of one switchboard server.
 *
 * Events: `"status"` (`"connecting"`, `"live"`, `"reconnecting"`, `"idle"`),
 * `"error"` (a background request failed; it is retried), `"lockLost"`,
 * `"online"` (true or false: whether the server can be reached), and the
 * outbox's `"outbox:queued"`, `"outbox:sent"`, `"outbox:rejected"`,
 * `"outbox:cancelled"`.
 */
export class Switchboard extends Emitter {
  /**
   * @param {object} [options]
   * @param {string} [options.url] the server; the page's origin by default
   * @param {string|(() => string|Promise<string>)} [options.token] a bearer token, or a function returning one
   * @param {string} [options.agentId] `X-Agent-ID` (in token mode the token names the agent)
   * @param {string} [options.sessionId] `X-Session-ID`; one per tab by default
   * @param {boolean} [options.sharedStream] one stream for all tabs of this
   *   browser with the same server and credentials (default `true`); `false`
   *   for a stream of this `Switchboard`'s own
   * @param {false|{storage?: "indexeddb"|"memory", name?: string}} [options.outbox]
   *   where writes made while the server cannot be reached are kept; `false`: nowhere
   */
  constructor({ url, token, agentId, sessionId, outbox, sharedStream = true } = {}) {
    super();
    this.url = String(url ?? globalThis.location?.origin ?? "").replace(/\/+$/, "");
    this.token = token ?? null;
    this.agentId = agentId ?? null;
    this.sessionId = sessionId ?? tabSessionId();
    this.features = new WorkItems(this, "features");
    this.tracks = new WorkItems(this, "tracks");
    this.spikes = new WorkItems(this, "spikes");
    this.files = new Files(this);
    this.conversations = new Conversations(this);
    this.events = new Events(this);
    this.subscriptions = new Subscriptions(this);
    /** @type {Set<LiveCollection>} */
    this._live = new Set();
    /** @type {Set<Lease>} */
    this._leases = new Set();
    /** The last version seen in an answer, by "collection/id". */
    this._versions = new Map();
    this._lastToken = typeof this.token === "string" ? this.token : null;
    this._hub = new StreamHub(this, sharedStream !== false);
    globalThis.addEventListener?.("pagehide", () => {
      for (const lease of [...this._leases]) lease._releaseOnExit();
      this._hub._hide();
    });
    globalThis.addEventListener?.("pageshow", (event) => {
      if (event.persisted) this._hub._show();
    });
    /** The live collections and conversations, which show pending writes. */
    this._views = new Set();
    /** False once a request failed on the network, until the server answers again. */
    this._reachable = true;
    this._onlineShown = this.online;
    this.outbox = new Outbox(this, outbox);
    this._onBrowserOnline = () => {
      this._checkOnline();
      this.outbox._retryNow();
    };
    this._onBrowserOffline = () => this._checkOnline();
    globalThis.addEventListener?.("online", this._onBrowserOnline);
    globalThis.addEventListener?.("offline", this._onBrowserOffline);
    this.on("status", (status) => {
      if (status === "live") this._setReachable(true);
    });
  }

  /**
   * Whether the server can be reached, as far as this page knows: false
   * while the browser says it is offline, and from a request that failed on
   * the network until the server answers one (or the stream opens).
   */
  get online() {
    return this._reachable && globalThis.navigator?.onLine !== false;
  }

  /** The shared stream's state: `"idle"`, `"connecting"`, `"live"` or `"reconnecting"`. */
  get status() {
    return this._hub.status;
  }

  /**
   * Who holds the stream: `"leader"` (this tab holds the browser's stream),
   * `"follower"` (another tab does), `"own"` (a stream of this
   * `Switchboard`'s own), or null before the first subscription.
   */
  get streamRole() {
    return this._hub.role;
  }

  /** The session the stream is opened as (presence): `browser-…` when shared. */
  get streamSessionId() {
    return this._hub.streamSession;
  }

  /**
   * Subscribes to events: `onEvent` gets each matching event once, in id
   * order, across reconnects and restarts. Without `lastEventId` it starts
   * now. Events of this session are left out unless `includeOwn`. When the
   * log no longer holds the position, `onEvent` gets `{type: "resync", id,
   * payload: {reason, head_id, oldest_id}}` and events go on from the head.
   */
  subscribe({ channels = "*", resourceIds, lastEventId, includeOwn = false } = {}, onEvent) {
    const sub = new Subscription(this._hub, { channels, resourceIds, includeOwn }, onEvent);
    if (lastEventId != null) {
      sub.lastEventId = Number(lastEventId);
      this._hub.add(sub);
    } else {
      sub.ready = (async () => {
        for (let delay = BACKOFF_FIRST; ; delay = Math.min(delay * 2, BACKOFF_MAX)) {
          try {
            const position = await this._position();
            if (sub.closed) return;
            sub.lastEventId = position;
            this._hub.add(sub);
            return;
          } catch (error) {
            if (sub.closed || (error.status >= 400 && error.status < 500)) throw error;
            this._emit("error", error);
            await new Promise((resolve) => setTimeout(resolve, delay));
          }
        }
      })();
    }
    return sub;
  }

  /** A live collection: `features`, `tracks`, `spikes`, `files` or `conversations`. */
  live(collection) {
    return new LiveCollection(this, collection);
  }

  /** One conversation with its messages, live. */
  conversation(id, options) {
    return new LiveConversation(this, id, options);
  }

  /** The sessions connected now, live. */
  presence() {
    return new LivePresence(this);
  }

  /** Publishes an event on a channel of your own; answers the stored event. */
  async publish(channel, type, data, { resourceType, resourceId, idempotencyKey, queue } = {}) {
    const body = { type, data: data ?? {} };
    if (resourceType != null) body.resource_type = resourceType;
    if (resourceId != null) body.resource_id = resourceId;
    const path = `/api/channels/${encodeURIComponent(channel)}/events`;
    return this._send("POST", path, { body, options: { idempotencyKey, queue }, op: { kind: "publish", channel } });
  }

  /** Publishes several events at once, all or nothing, with consecutive ids. */
  async publishBatch(events, { idempotencyKey, queue } = {}) {
    return this._send("POST", "/api/events/batch", { body: { events }, options: { idempotencyKey, queue }, op: { kind: "publish_batch" } });
  }

  /** The sessions connected now, once. */
  async sessions() {
    return (await this._request("GET", "/api/sessions")).body;
  }

  /** Closes the stream and releases every lease held; the outbox stops sending (what waits stays kept). */
  async close() {
    this.outbox.close();
    globalThis.removeEventListener?.("online", this._onBrowserOnline);
    globalThis.removeEventListener?.("offline", this._onBrowserOffline);
    for (const sub of [...this._hub.subs]) sub.close();
    this._hub.shutdown();
    await Promise.all([...this._leases].map((lease) => lease.release().catch(() => {})));
  }

  // ---- internals -------------------------------------------------------

  _hasToken() {
    return this.token != null;
  }

  /**
   * The name of the lock and channel of the tabs that share a stream: the
   * server, the agent and who the token names — tabs of another user or
   * server never share.
   */
  async _sharedKey() {
    const credential = this.token == null ? null : tokenIdentity(await this._token());
    return "switchboard-stream-" + (await sha256hex(JSON.stringify([this.url, this.agentId, credential])));
  }

  async _token() {
    if (this.token == null) return null;
    const token = typeof this.token === "function" ? await this.token() : this.token;
    this._lastToken = token;
    return token;
  }

  _url(path, query) {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v != null && v !== "") search.set(k, String(v));
    const qs = search.toString();
    return this.url + path + (qs ? `?${qs}` : "");
  }

  _headers(token, sessionId = this.sessionId) {
    const headers = { Accept: "application/json", "X-Session-ID": sessionId };
    if (this.agentId) headers["X-Agent-ID"] = this.agentId;
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  /** The version to send as `If-Match`, from the options or what is held. */
  _ifMatch(collection, id, options) {
    if (options.ifMatch === false) return null;
    if (options.ifMatch != null) return options.ifMatch;
    for (const live of this._live) {
      if (live.name === collection && live._items.has(id)) return live.version(id);
    }
    return this._versions.get(`${collection}/${id}`) ?? null;
  }

  /**
   * Notes a resource from an answer: its version, and live collections (a
   * deletion's answer removes it there). A pending result is not an answer.
   */
  _resource(collection, resource) {
    const key = collection === "files" ? "stable_id" : "id";
    if (!resource || resource._pending || resource[key] == null || typeof resource.version !== "number") return resource;
    const id = resource[key];
    if (resource.deleted) {
      this._versions.delete(`${collection}/${id}`);
      for (const live of this._live) {
        if (live.name !== collection) continue;
        const held = live._items.has(id);
        live._remove(id, resource.version);
        if (held) live._emit("change", { reason: "answer" });
      }
      return resource;
    }
    this._versions.set(`${collection}/${id}`, resource.version);
    for (const live of this._live) {
      if (live.name !== collection) continue;
      const { content, ...metadata } = resource;
      if (live._merge(collection === "files" ? metadata : resource)) live._emit("change", { reason: "answer" });
    }
    return resource;
  }

  /** A queued write's answer, or a refusal's current resource: into the views, as a direct answer goes. */
  _answered(op, resource) {
    if (resource == null || typeof resource !== "object") return;
    if (op.kind === "message") {
      for (const view of this._views) view._sentMessage?.(op.conversation, resource);
    } else if (COLLECTIONS.includes(op.collection)) {
      this._resource(op.collection, resource);
    }
  }

  _setReachable(reachable) {
    this._reachable = reachable;
    this._checkOnline();
  }

  /** Emits `"online"` when `online` changed; back online, the outbox is sent at once. */
  _checkOnline() {
    const online = this.online;
    if (online === this._onlineShown) return;
    this._onlineShown = online;
    this._emit("online", online);
    if (online) this.outbox?._retryNow();
  }

  /** Can this write wait in the outbox? */
  _queueable(options) {
    return this.outbox.enabled && options?.queue !== false;
  }

  /**
   * A write the outbox may keep: sent at once while nothing waits and the
   * server can be reached, else queued behind what waits. A network failure
   * queues it too (with the same key and body, so that if it did reach the
   * server the repeat is answered from the server's record). Answers the
   * server's answer, or for a queued write its pending result.
   */
  async _send(method, path, { body, ifMatch = null, options = {}, op }) {
    const spec = {
      method,
      path,
      bodyText: body === undefined ? null : JSON.stringify(body),
      ifMatch: ifMatch ?? null,
      idempotencyKey: options.idempotencyKey ?? `sb-${randomHex(12)}`,
      sessionId: this.sessionId,
      op: { collection: null, id: null, ...op, agent: this.agentId },
    };
    const queueable = this._queueable(options);
    if (queueable) {
      await this.outbox.ready;
      if (this.outbox._busy() || !this.online) return this.outbox._queue(spec);
    }
    try {
      const answer = await this._request(method, path, {
        bodyText: spec.bodyText ?? undefined,
        ifMatch: spec.ifMatch,
        idempotencyKey: spec.idempotencyKey,
        attempts: queueable ? 1 : 2,
      });
      return answer.body;
    } catch (error) {
      if (queueable && error.code === "network_error") return this.outbox._queue(spec, error);
      throw error;
    }
  }

  /** Where "now" is in the log: the stream's position, else the newest event. */
  async _position() {
    if (this._hub.position != null) return this._hub.position;
    const { body } = await this._request("GET", "/api/events", { query: { order: "desc", limit: "1" } });
    return body.events[0]?.id ?? 0;
  }

  /**
   * One request. Writes carry an `Idempotency-Key`; a request whose `fetch`
   * failed (the network, not an answer) is sent again 250 ms later, up to
   * `attempts` in all (the server answers a repeated write from its
   * record). `bodyText` is a body already serialized (the outbox's, sent
   * byte for byte as queued); `sessionId` the session it was made in.
   */
  async _request(method, path, { body, bodyText, query, ifMatch, idempotencyKey, sessionId, attempts = 2 } = {}) {
    const write = method !== "GET" && method !== "HEAD";
    const headers = this._headers(await this._token(), sessionId);
    const sent = bodyText ?? (body === undefined ? undefined : JSON.stringify(body));
    if (sent !== undefined) headers["Content-Type"] = "application/json";
    if (ifMatch != null) headers["If-Match"] = `"${ifMatch}"`;
    if (write) headers["Idempotency-Key"] = idempotencyKey ?? `sb-${randomHex(12)}`;
    const init = { method, headers, body: sent };
    const url = this._url(path, query);
    let response;
    for (let attempt = 1; ; attempt++) {
      try {
        response = await fetch(url, init);
        break;
      } catch (error) {
        if (attempt >= attempts) {
          this._setReachable(false);
          throw new SwitchboardError(0, "network_error", `${method} ${path}: ${error.message}`, {});
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    this._setReachable(true);
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch (_) {
      parsed = text;
    }
    if (!response.ok) {
      const error = parsed && parsed.error ? parsed.error : { code: `http_${response.status}`, message: `${method} ${path}: ${response.status}` };
      throw new SwitchboardError(response.status, error.code, error.message, error.details);
    }
    return { body: parsed, headers: response.headers, status: response.status };
  }
}

export default Switchboard;
