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
// `Idempotency-Key` on every write (retried once on a network failure), lock
// leases renewed before they run out and released when the page goes away,
// and streaming messages stitched from their deltas by offset.
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
   * The connection's start was pruned or ahead of the log: it goes on from
   * the head. Subscriptions whose own position is lost are told; the others
   * resume from where they were, on a new connection.
   */
  _resync(data) {
    const head = data.head_id;
    for (const sub of this._all()) {
      const expired = data.reason === "cursor_expired" && sub.lastEventId < data.oldest_id - 1;
      const ahead = sub.lastEventId > head;
      if (expired || ahead) sub._resync(data);
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
    /** @type {Map<string, object>} */
    this.items = new Map();
    this._key = name === "files" ? "stable_id" : "id";
    /** Versions of deleted items, so a late answer does not revive them. */
    this._tombstones = new Map();
    sb._live.add(this);
    this.ready = this._start([name]);
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
      for (const id of p.stable_ids) this._remove(id, this.items.get(id)?.version ?? 0);
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
    const held = this.items.get(id);
    const dead = this._tombstones.get(id);
    if (held && held.version >= item.version) return false;
    if (!held && dead !== undefined && dead >= item.version) return false;
    this._tombstones.delete(id);
    this.items.set(id, item);
    return true;
  }

  _remove(id, version) {
    this.items.delete(id);
    this._tombstones.set(id, Math.max(version ?? 0, this._tombstones.get(id) ?? 0));
  }

  _patchLock(id, lock) {
    const held = this.items.get(id);
    if (held) this.items.set(id, { ...held, ...lock });
  }

  /** A work-item event that carries the change, not the item. */
  _applyItemChange(event) {
    const p = event.payload;
    const held = this.items.get(p.id);
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
    this.items.set(p.id, item);
  }

  async _refetchItem(id) {
    try {
      const { body } = await this._sb._request("GET", `/api/${this.name}/${encodeURIComponent(id)}`);
      if (this._merge(body)) this._emit("change", { reason: "refetch" });
    } catch (error) {
      if (error.code !== "not_found") this._refetch();
    }
  }

  /** The version held of `id`, or undefined. */
  version(id) {
    return this.items.get(id)?.version;
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
    /** @type {object[]} */
    this.messages = [];
    this._pageSize = pageSize;
    this.ready = this._start([`conversation:${id}`, "conversations"]);
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
        if (!this.message(p.id)) this.messages.push(p);
        return true;
      case "message_delta":
        return this._delta(p);
      case "message_completed": {
        const i = this.messages.findIndex((m) => m.id === p.id);
        if (i < 0) this.messages.push(p);
        else this.messages[i] = p;
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
    const i = this.messages.findIndex((m) => m.id === message_id);
    if (i < 0) {
      this._refetch();
      return false;
    }
    const message = this.messages[i];
    if (message.status !== "streaming" || offset + text.length <= message.content.length) return false;
    if (offset !== message.content.length) {
      // A gap (or an overlap that does not line up): read again, never guess.
      this._refetch();
      return false;
    }
    this.messages[i] = { ...message, content: message.content + text };
    return true;
  }

  /** Adds a message to this conversation; see `sb.conversations.send`. */
  send(message, options) {
    return this._sb.conversations.send(this.id, message, options);
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

  /** Creates an item: `{id?, title, status?, description?, priority?, tags?, track_id?}`. */
  async create(fields, options = {}) {
    return this._write("POST", null, "", fields, options);
  }

  /**
   * A partial update. Sends `If-Match` with the version held (a live
   * collection's, else the last answer seen) unless `options.ifMatch` says
   * otherwise (`false` for none).
   */
  async update(id, fields, options = {}) {
    return this._write("PATCH", id, "", fields, options, true);
  }

  async setStatus(id, newStatus, options = {}) {
    return this._write("POST", id, "/status", { new_status: newStatus }, options);
  }

  async link(id, linkedId, linkType = "relates_to", options = {}) {
    return this._write("POST", id, "/links", { linked_feature_id: linkedId, link_type: linkType }, options);
  }

  async unlink(id, linkedId, linkType, options = {}) {
    const query = linkType ? `?link_type=${encodeURIComponent(linkType)}` : "";
    return this._write("DELETE", id, `/links/${encodeURIComponent(linkedId)}${query}`, undefined, options);
  }

  async comment(id, text, options = {}) {
    return this._write("POST", id, "/comments", { comment_text: text }, options);
  }

  async remove(id, options = {}) {
    return this._write("DELETE", id, "", undefined, options);
  }

  async _write(method, id, rest, body, options, versioned = false) {
    const ifMatch = versioned ? this._sb._ifMatch(this.name, id, options) : options.ifMatch || null;
    const { body: answer } = await this._sb._request(method, this._path(id, rest), { body, ifMatch, idempotencyKey: options.idempotencyKey });
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

  /** Creates a file: `{stable_id?, name, content, label?, derived_from?}`. */
  async create(file, options = {}) {
    const { body } = await this._sb._request("POST", this._path(), { body: file, idempotencyKey: options.idempotencyKey });
    return this._sb._resource("files", body);
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

  /** `{id?, title}` */
  async create(conversation, options = {}) {
    const { body } = await this._sb._request("POST", this._path(), { body: conversation, idempotencyKey: options.idempotencyKey });
    return this._sb._resource("conversations", body);
  }

  async rename(id, title, options = {}) {
    const { body } = await this._sb._request("PATCH", this._path(id), { body: { title }, ifMatch: this._sb._ifMatch("conversations", id, options) });
    return this._sb._resource("conversations", body);
  }

  async remove(id) {
    return (await this._sb._request("DELETE", this._path(id))).body;
  }

  /** Adds a message: `{id?, role, content?, status?: "streaming"|"complete", usage?}`. */
  async send(conversationId, message, options = {}) {
    const { body } = await this._sb._request("POST", this._path(conversationId, "/messages"), { body: message, idempotencyKey: options.idempotencyKey });
    return body;
  }

  /** Appends text to a streaming message; answers `{message_id, offset, length}`. */
  async appendDelta(conversationId, messageId, text, options = {}) {
    const path = this._path(conversationId, `/messages/${encodeURIComponent(messageId)}/delta`);
    return (await this._sb._request("POST", path, { body: { text }, idempotencyKey: options.idempotencyKey })).body;
  }

  /** Completes a streaming message, with `{input_tokens, output_tokens}` if known. */
  async complete(conversationId, messageId, usage, options = {}) {
    const path = this._path(conversationId, `/messages/${encodeURIComponent(messageId)}/complete`);
    return (await this._sb._request("POST", path, { body: usage ? { usage } : {}, idempotencyKey: options.idempotencyKey })).body;
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

/**
 * A client of one switchboard server.
 *
 * Events: `"status"` (`"connecting"`, `"live"`, `"reconnecting"`, `"idle"`),
 * `"error"` (a background request failed; it is retried), `"lockLost"`.
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
   */
  constructor({ url, token, agentId, sessionId, sharedStream = true } = {}) {
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
  async publish(channel, type, data, { resourceType, resourceId, idempotencyKey } = {}) {
    const body = { type, data: data ?? {} };
    if (resourceType != null) body.resource_type = resourceType;
    if (resourceId != null) body.resource_id = resourceId;
    return (await this._request("POST", `/api/channels/${encodeURIComponent(channel)}/events`, { body, idempotencyKey })).body;
  }

  /** Publishes several events at once, all or nothing, with consecutive ids. */
  async publishBatch(events, { idempotencyKey } = {}) {
    return (await this._request("POST", "/api/events/batch", { body: { events }, idempotencyKey })).body;
  }

  /** The sessions connected now, once. */
  async sessions() {
    return (await this._request("GET", "/api/sessions")).body;
  }

  /** Closes the stream and releases every lease held. */
  async close() {
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

  _headers(token) {
    const headers = { Accept: "application/json", "X-Session-ID": this.sessionId };
    if (this.agentId) headers["X-Agent-ID"] = this.agentId;
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  /** The version to send as `If-Match`, from the options or what is held. */
  _ifMatch(collection, id, options) {
    if (options.ifMatch === false) return null;
    if (options.ifMatch != null) return options.ifMatch;
    for (const live of this._live) {
      if (live.name === collection && live.items.has(id)) return live.version(id);
    }
    return this._versions.get(`${collection}/${id}`) ?? null;
  }

  /** Notes a resource from an answer: its version, and live collections. */
  _resource(collection, resource) {
    const key = collection === "files" ? "stable_id" : "id";
    if (resource && resource[key] != null && typeof resource.version === "number" && !resource.deleted) {
      this._versions.set(`${collection}/${resource[key]}`, resource.version);
      for (const live of this._live) {
        if (live.name !== collection) continue;
        const { content, ...metadata } = resource;
        if (live._merge(collection === "files" ? metadata : resource)) live._emit("change", { reason: "answer" });
      }
    }
    return resource;
  }

  /** Where "now" is in the log: the stream's position, else the newest event. */
  async _position() {
    if (this._hub.position != null) return this._hub.position;
    const { body } = await this._request("GET", "/api/events", { query: { order: "desc", limit: "1" } });
    return body.events[0]?.id ?? 0;
  }

  /**
   * One request. Writes carry an `Idempotency-Key` and are sent again, once,
   * when the network failed (the server answers a repeat from its record).
   */
  async _request(method, path, { body, query, ifMatch, idempotencyKey } = {}) {
    const write = method !== "GET" && method !== "HEAD";
    const headers = this._headers(await this._token());
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (ifMatch != null) headers["If-Match"] = `"${ifMatch}"`;
    if (write) headers["Idempotency-Key"] = idempotencyKey ?? `sb-${randomHex(12)}`;
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    const url = this._url(path, query);
    let response;
    for (let attempt = 0; ; attempt++) {
      try {
        response = await fetch(url, init);
        break;
      } catch (error) {
        if (attempt >= 1) throw new SwitchboardError(0, "network_error", `${method} ${path}: ${error.message}`, {});
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
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
