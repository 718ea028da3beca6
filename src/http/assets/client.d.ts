/// <reference lib="es2015" />
// TypeScript declarations of switchboard's browser client, `/client.js`.
// Served next to it at `/client.d.ts`. The wire shapes follow the server's
// views (src/domain/views.rs); times are RFC 3339 UTC strings.
//
//   import { Switchboard } from "/client.js";
//   const sb = new Switchboard();
//   const features = sb.live("features");   // LiveCollection<Feature>

// ---- wire shapes ---------------------------------------------------------

/** An RFC 3339 UTC time with microseconds: `2026-11-21T12:00:00.123456Z`. */
export type Timestamp = string;

export type Status = "todo" | "in_progress" | "blocked" | "done" | "cancelled";
export type Priority = "low" | "medium" | "high" | "critical";
export type LinkType = "depends_on" | "blocks" | "blocked_by" | "relates_to" | "part_of";
export type Role = "user" | "assistant" | "system" | "tool";
export type MessageStatus = "streaming" | "complete";

/** One row of the event log. `payload` depends on `type` (see docs/api.md). */
export interface SwitchboardEvent<P = any> {
  id: number;
  channel: string;
  type: string;
  resource_type: string | null;
  resource_id: string | null;
  agent_id: string;
  session_id: string | null;
  timestamp: Timestamp;
  payload: P;
}

/** The data of the stream's `resync`. */
export interface ResyncData {
  reason: "cursor_expired" | "cursor_ahead" | "failover";
  head_id: number;
  oldest_id: number;
  /** `failover`: the last id the log kept; the events above it were lost. */
  kept_through?: number;
}

/**
 * What a subscription receives when the log no longer holds (or does not yet
 * hold) its position; events go on from `head_id`. Tell it from an event by
 * `type === "resync"` or `channel === null`.
 */
export interface ResyncEvent {
  id: number;
  type: "resync";
  channel: null;
  payload: ResyncData;
}

/** A link to another work item (of any collection). */
export interface Link {
  linked_feature_id: string;
  link_type: LinkType;
}

export interface Comment {
  /** `cmt-…` (`pending-…` while it waits in the outbox) */
  id: string;
  comment_text: string;
  /** The agent that wrote it. */
  author: string;
  created_at: Timestamp;
  /** Present (true) while the comment waits in the outbox. */
  _pending?: true;
}

/** What every work item has. */
interface WorkItemBase {
  id: string;
  title: string;
  status: Status;
  description: string | null;
  links: Link[];
  comments: Comment[];
  /** 1 on create, +1 on every change. */
  version: number;
  created_at: Timestamp;
  updated_at: Timestamp;
  created_by: string;
  updated_by: string;
}

export interface Feature extends WorkItemBase {
  priority: Priority | null;
  tags: string[];
  track_id: string | null;
}

export interface Track extends WorkItemBase {}

export interface Spike extends WorkItemBase {
  priority: Priority | null;
  tags: string[];
  track_id: string | null;
  findings: string | null;
}

export type WorkItem = Feature | Track | Spike;

/** `POST /api/features`. */
export interface FeatureCreate {
  id?: string;
  title: string;
  status?: Status;
  description?: string | null;
  priority?: Priority;
  tags?: string[];
  track_id?: string | null;
}

/** `POST /api/tracks`. */
export interface TrackCreate {
  id?: string;
  title: string;
  status?: Status;
  description?: string | null;
}

/** `POST /api/spikes`. */
export interface SpikeCreate extends FeatureCreate {
  findings?: string | null;
}

/** A partial update: a missing field is left alone, `null` clears it. */
export type FeaturePatch = Partial<Omit<FeatureCreate, "id">>;
export type TrackPatch = Partial<Omit<TrackCreate, "id">>;
export type SpikePatch = Partial<Omit<SpikeCreate, "id">>;

/** The answer to a delete: the resource is a tombstone now. */
export interface DeletedResource {
  id: string;
  version: number;
  deleted: true;
}

/** A file's metadata and lock state (never its content). */
export interface FileMetadata {
  stable_id: string;
  name: string;
  label: string | null;
  derived_from: string | null;
  /** The content's size in bytes. */
  size: number;
  version: number;
  created_at: Timestamp;
  updated_at: Timestamp;
  created_by: string;
  updated_by: string;
  /** The agent holding the lock; `null` when unlocked. */
  locked_by: string | null;
  /** The session holding the lock. */
  lock_session_id: string | null;
  /** When the lock's lease runs out. */
  lock_expires_at: Timestamp | null;
}

export interface FileWithContent extends FileMetadata {
  /** UTF-8 text. */
  content: string;
}

/** `POST /api/files`. */
export interface FileCreate {
  stable_id?: string;
  name: string;
  content: string;
  label?: string;
  derived_from?: string;
}

/** A file's lock, as `POST /api/files/{id}/lock` answers it. */
export interface Lock {
  stable_id: string;
  locked_by: string;
  session_id: string;
  expires_at: Timestamp;
}

/** `details` of a 409 `lock_held`. */
export interface LockHeldDetails {
  stable_id: string;
  locked_by: string;
  lock_session_id: string;
  lock_expires_at: Timestamp;
}

export interface FileVersionInfo {
  version: number;
  saved_at: Timestamp;
  saved_by: string;
  /** Its size in bytes. */
  size: number;
}

export interface FileVersions {
  stable_id: string;
  versions: FileVersionInfo[];
}

export interface FileVersion extends FileVersionInfo {
  stable_id: string;
  content: string;
}

export interface FileList {
  files: FileMetadata[];
  cursor: number;
}

export interface FilesDeleted {
  stable_ids: string[];
}

/** A conversation's summary. */
export interface Conversation {
  id: string;
  title: string;
  message_count: number;
  input_tokens: number;
  output_tokens: number;
  updated_at: Timestamp;
  version: number;
  created_at: Timestamp;
  created_by: string;
  updated_by: string;
}

export interface ConversationList {
  conversations: Conversation[];
  cursor: number;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

/** A message; a streaming one has the text received so far. */
export interface Message {
  id: string;
  conversation_id: string;
  role: Role;
  content: string;
  status: MessageStatus;
  /** `null` until the message is complete (or created complete without usage). */
  usage: Usage | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  created_by: string;
}

/** `POST /api/conversations/{id}/messages`. */
export interface NewMessage {
  id?: string;
  role: Role;
  content?: string;
  status?: MessageStatus;
  usage?: Usage;
}

/** The answer to a delta: where the text went, in UTF-16 code units. */
export interface DeltaResult {
  message_id: string;
  offset: number;
  length: number;
}

/** A session with a stream open. */
export interface Session {
  session_id: string;
  agent_id: string;
  connections: number;
  channels: string[];
  connected_at: Timestamp;
  /** With PostgreSQL: the nodes it is connected to. */
  nodes?: string[];
}

/** `GET /api/sessions`. */
export interface Sessions {
  scope: "node" | "cluster";
  /** With PostgreSQL: the node that answered. */
  node_id?: string;
  sessions: Session[];
}

/** An event of `publishBatch`. */
export interface BatchEvent {
  channel: string;
  type: string;
  data?: unknown;
  resource_type?: string;
  resource_id?: string;
}

export interface EventList {
  events: SwitchboardEvent[];
  next_cursor: number | null;
}

/** `GET /api/events` filters. */
export interface EventFilters {
  after?: number;
  before?: number;
  limit?: number;
  channels?: string;
  type?: string;
  resource_id?: string;
  agent_id?: string;
  session_id?: string;
  order?: "asc" | "desc";
}

// ---- the client ----------------------------------------------------------

/**
 * An answer of the API that is not a success, or a request that could not
 * reach the server (`status` 0, `code` `"network_error"`).
 */
export class SwitchboardError extends Error {
  constructor(status: number, code: string, message: string, details?: Record<string, any>);
  name: string;
  /** HTTP status (0 when the server was not reached). */
  status: number;
  /** The API's error code (`lock_held`, `precondition_failed`, …), or `http_<status>`. */
  code: string;
  /** The API's `details` (`{}` when none): `current` for 412, {@link LockHeldDetails} for `lock_held`. */
  details: Record<string, any>;
}

/** The shared stream's state. */
export type ConnectionStatus = "idle" | "connecting" | "live" | "reconnecting";

export type WorkItemCollection = "features" | "tracks" | "spikes";
export type CollectionName = WorkItemCollection | "files" | "conversations";

/** A bearer token, or a function returning one (called before every request). */
export type TokenSource = string | (() => string | Promise<string>);

export interface SwitchboardOptions {
  /** The server; the page's origin by default. */
  url?: string;
  /** A bearer token, or a function returning one: token mode. */
  token?: TokenSource;
  /** `X-Agent-ID` (in token mode the token names the agent). */
  agentId?: string;
  /** `X-Session-ID`; one per tab by default (kept in `sessionStorage`). */
  sessionId?: string;
  /**
   * One stream for all tabs of this browser with the same `url`, agent and
   * token subject (`true`, the default, where the browser has Web Locks and
   * BroadcastChannel); `false`: a stream of this `Switchboard`'s own.
   */
  sharedStream?: boolean;
  /**
   * Where writes made while the server cannot be reached wait: IndexedDB by
   * default (memory where it is missing); `false` keeps none (such writes
   * reject with `network_error`).
   */
  outbox?: false | OutboxOptions;
}

export interface OutboxOptions {
  /** `"indexeddb"` (default; kept across reloads, shared by tabs) or `"memory"` (this page only). */
  storage?: "indexeddb" | "memory";
  /**
   * Tells outboxes apart beyond the server, agent id and string token (say,
   * the signed-in user's id with a token function).
   */
  name?: string;
}

/** Who holds the stream this `Switchboard` takes its events from. */
export type StreamRole = "leader" | "follower" | "own";

export interface SubscribeOptions {
  /** Channel patterns (`*` suffix = prefix), as a list or comma-separated; `"*"` by default. */
  channels?: string | string[];
  /** Only events with one of these `resource_id`s. */
  resourceIds?: string | string[];
  /** Start after this event id; without it the subscription starts now. */
  lastEventId?: number | string;
  /** Also deliver this session's own events; `false` by default. */
  includeOwn?: boolean;
}

/** What `lockLost` listeners and `onLost` receive. */
export interface LockLostInfo {
  stableId: string;
  /**
   * `"taken"`, `"released"`, `"expired"`, `"deleted"`, or the error code of
   * a renewal the server refused (`"lock_held"`, …).
   */
  reason: string;
  /** The failed renewal's error, if that is how the lease was lost. */
  error?: SwitchboardError;
}

export interface WriteOptions {
  /** The `Idempotency-Key` to send; a random one by default (kept with the write if it is queued). */
  idempotencyKey?: string;
  /**
   * `false`: never queue this write; when the server cannot be reached it
   * rejects with `network_error`, and it does not wait behind queued writes.
   */
  queue?: boolean;
}

/** What marks a change the server has not taken yet (in `items`, `messages`, comments). */
export interface PendingMark {
  /** Present (true) while the change waits in the outbox. */
  _pending?: true;
}

/**
 * What a write queued in the outbox resolves with: the change as the page
 * shows it (for a create, the item as the server would make it, version 0;
 * for a change to an item not held, its id and the fields sent), marked
 * pending. `sb.outbox.sent(_outboxId)` gives the server's answer later.
 */
export type Queued<T> = Partial<T> & { _pending: true; _outboxId: string };

export interface VersionedWriteOptions extends WriteOptions {
  /**
   * The version to send as `If-Match`. Where the method sends the version
   * held by default (`update`, `files.save`), `false` sends none.
   */
  ifMatch?: number | false;
}

export interface PublishOptions extends WriteOptions {
  resourceType?: string;
  resourceId?: string;
}

/** `GET /api/{features,tracks,spikes}` filters. */
export interface WorkItemFilters {
  status?: Status;
  track_id?: string;
  tag?: string;
  updated_since_id?: number;
}

/** `GET /api/features` → `{features, cursor}` (tracks, spikes likewise). */
export type WorkItemList<N extends WorkItemCollection, T> = { [K in N]: T[] } & { cursor: number };

export interface LiveChange<T = any> {
  /**
   * `"snapshot"`, `"event"`, `"resync"`, `"refetch"` (one item read again),
   * `"answer"` (a write's answer) or `"outbox"` (a write was queued, sent,
   * refused or cancelled).
   */
  reason: "snapshot" | "event" | "resync" | "refetch" | "answer" | "outbox";
  /** The event applied, when `reason` is `"event"`. */
  event?: SwitchboardEvent<T>;
}

/**
 * What `sb.subscribe()` returns. Events reach `onEvent` once each, in id
 * order; a `resync` reaches it as an event of type `"resync"`.
 */
export interface Subscription {
  readonly channels: string[];
  readonly resourceIds: string[];
  readonly includeOwn: boolean;
  /** The id of the newest event this subscription has passed (or skipped); `null` until registered. */
  readonly lastEventId: number | null;
  readonly closed: boolean;
  /** Resolves once the subscription is registered with its start position. */
  readonly ready: Promise<void>;
  close(): void;
}

/**
 * What `subscribe(listener)` and `getSnapshot()` bind to: React's
 * `useSyncExternalStore(live.subscribe, live.getSnapshot)`, a Svelte store
 * (`$live`), a Vue `shallowRef`. `getSnapshot()` answers the same frozen
 * object until the next change; `subscribe` calls `listener` at once with
 * the snapshot, then after every change, and returns the unsubscribe
 * function.
 */
export interface Bindable<S> {
  getSnapshot(): S;
  subscribe(listener: (snapshot: S) => void): () => void;
}

/** A live collection's immutable snapshot. */
export interface CollectionSnapshot<T> {
  /** In the order held: the snapshot's, then new items. Sort to display. */
  readonly items: readonly Readonly<T>[];
  /** The same items by `id` (files: `stable_id`). */
  readonly byId: Readonly<Record<string, Readonly<T>>>;
  readonly cursor: number | null;
  /** False until the first snapshot is in. */
  readonly loaded: boolean;
}

/** A live conversation's immutable snapshot. */
export interface ConversationSnapshot {
  readonly conversation: Readonly<Conversation & { deleted?: true }> | null;
  readonly messages: readonly Readonly<Message>[];
  readonly cursor: number | null;
  readonly loaded: boolean;
}

/** Live presence's immutable snapshot. */
export interface PresenceSnapshot {
  readonly sessions: readonly Readonly<Session>[];
  /** False until `/api/sessions` was read. */
  readonly loaded: boolean;
}

/**
 * A live collection: `items` equal to the server's state as of `cursor`,
 * kept by a snapshot from `/api/sync` and the stream from its cursor.
 */
export interface LiveCollection<T> extends Bindable<CollectionSnapshot<T>> {
  readonly name: CollectionName;
  /**
   * By `id` (files: by `stable_id`), with the writes waiting in the outbox
   * applied and marked `_pending: true`; a pending removal is left out.
   */
  readonly items: Map<string, T & PendingMark>;
  /** The newest event id applied; `null` before the first snapshot. */
  readonly cursor: number | null;
  readonly closed: boolean;
  /** True once the first snapshot is in. */
  readonly loaded: boolean;
  /** Resolves once the first snapshot is loaded (rejects on a 4xx answer). */
  readonly ready: Promise<this>;
  on(name: "change", fn: (change: LiveChange) => void): () => void;
  off(name: "change", fn: (change: LiveChange) => void): void;
  /** The version the server has of `id` (pending writes aside), or undefined. */
  version(id: string): number | undefined;
  close(): void;
}

/** One conversation with its messages, live. */
export interface LiveConversation extends Bindable<ConversationSnapshot> {
  readonly id: string;
  /** The summary; `deleted: true` once the conversation was deleted. */
  readonly conversation: (Conversation & { deleted?: true }) | null;
  /**
   * Every message, in order; streaming ones grow delta by delta. Messages
   * waiting in the outbox come last, marked `_pending: true`.
   */
  readonly messages: Array<Message & PendingMark>;
  readonly cursor: number | null;
  readonly closed: boolean;
  readonly loaded: boolean;
  readonly ready: Promise<this>;
  on(name: "change", fn: (change: LiveChange) => void): () => void;
  off(name: "change", fn: (change: LiveChange) => void): void;
  /** The message with this id, or undefined. */
  message(id: string): Message | undefined;
  /** Adds a message to this conversation; see `sb.conversations.send`. */
  send(message: NewMessage, options?: WriteOptions): Promise<Message | Queued<Message>>;
  close(): void;
}

/** The sessions connected now, live. */
export interface LivePresence extends Bindable<PresenceSnapshot> {
  /** By `session_id`. */
  readonly sessions: Map<string, Session>;
  readonly closed: boolean;
  readonly loaded: boolean;
  /** Resolves after the first read of `/api/sessions` (also when it failed). */
  readonly ready: Promise<this>;
  on(name: "change", fn: (change: { reason: "presence" }) => void): () => void;
  off(name: "change", fn: (change: { reason: "presence" }) => void): void;
  close(): void;
}

/** A lock on a file, renewed before it runs out until `release()`. */
export interface Lease {
  readonly stableId: string;
  readonly ttlSeconds: number;
  onLost: ((info: LockLostInfo) => void) | null;
  readonly held: boolean;
  /** The server's answer to the last (re)newal. */
  readonly lock: Lock | null;
  readonly expiresAt: Date | null;
  /** Saves the file's content with this lease (and `If-Match`). */
  save(content: string, options?: VersionedWriteOptions): Promise<FileMetadata>;
  /** Releases the lock; resolves when the server has released it. */
  release(): Promise<void>;
}

export interface LockOptions {
  /** The lease's term, 1–3600; 60 by default. */
  ttlSeconds?: number;
  onLost?: (info: LockLostInfo) => void;
}

/** `sb.features`, `sb.tracks`, `sb.spikes`. */
export interface WorkItems<T extends WorkItem, Create, Patch, N extends WorkItemCollection> {
  readonly name: N;
  list(filters?: WorkItemFilters): Promise<WorkItemList<N, T>>;
  get(id: string): Promise<T>;
  /** Without an `id`, the client makes one as the server would (`feat-…`, `trk-…`, `spk-…`). */
  create(fields: Create, options?: WriteOptions): Promise<T | Queued<T>>;
  /** A partial update, with `If-Match` from the version held unless `options.ifMatch` says otherwise. */
  update(id: string, fields: Patch, options?: VersionedWriteOptions): Promise<T | Queued<T>>;
  setStatus(id: string, newStatus: Status, options?: VersionedWriteOptions): Promise<T | Queued<T>>;
  link(id: string, linkedId: string, linkType?: LinkType, options?: VersionedWriteOptions): Promise<T | Queued<T>>;
  /** Without `linkType`, every link to `linkedId` goes. */
  unlink(id: string, linkedId: string, linkType?: LinkType, options?: VersionedWriteOptions): Promise<T | Queued<T>>;
  comment(id: string, text: string, options?: VersionedWriteOptions): Promise<T | Queued<T>>;
  remove(id: string, options?: VersionedWriteOptions): Promise<DeletedResource | Queued<DeletedResource>>;
}

/** `sb.files`. */
export interface Files {
  list(): Promise<FileList>;
  get(stableId: string): Promise<FileWithContent>;
  versions(stableId: string): Promise<FileVersions>;
  version(stableId: string, n: number): Promise<FileVersion>;
  /** Without a `stable_id`, the client makes one as the server would (`file-…`). */
  create(file: FileCreate, options?: WriteOptions): Promise<FileMetadata | Queued<FileMetadata>>;
  /**
   * This session must hold the lock; `If-Match` from the version held unless
   * `options.ifMatch` says otherwise. Never queued (a lock does not wait offline).
   */
  save(stableId: string, content: string, options?: VersionedWriteOptions): Promise<FileMetadata>;
  /** One file, or several (a list or comma-separated), all or nothing; this session must hold every lock. */
  remove(stableIds: string | string[]): Promise<FilesDeleted>;
  /** Locks a file for this session and keeps the lock; rejects with `lock_held` when another session holds it. */
  lock(stableId: string, options?: LockOptions): Promise<Lease>;
}

/** `sb.conversations`. */
export interface Conversations {
  list(): Promise<ConversationList>;
  get(id: string): Promise<Conversation>;
  /** Without an `id`, the client makes one as the server would (`conv-…`). */
  create(conversation: { id?: string; title: string }, options?: WriteOptions): Promise<Conversation | Queued<Conversation>>;
  /** `If-Match` from the version held unless `options.ifMatch` says otherwise. */
  rename(id: string, title: string, options?: VersionedWriteOptions): Promise<Conversation | Queued<Conversation>>;
  remove(id: string, options?: WriteOptions): Promise<DeletedResource | Queued<DeletedResource>>;
  /** Without an `id`, the client makes one as the server would (`msg-…`). */
  send(conversationId: string, message: NewMessage, options?: WriteOptions): Promise<Message | Queued<Message>>;
  appendDelta(conversationId: string, messageId: string, text: string, options?: WriteOptions): Promise<DeltaResult | Queued<DeltaResult>>;
  complete(conversationId: string, messageId: string, usage?: Usage | null, options?: WriteOptions): Promise<Message | Queued<Message>>;
}

/** A write waiting in the outbox, as `sb.outbox.list()` shows it. */
export interface OutboxWrite {
  /** `ob-…`: for `cancel` and `sent`. */
  readonly id: string;
  readonly method: "POST" | "PATCH" | "PUT" | "DELETE";
  /** The API path, e.g. `/api/features/feat-1/status`. */
  readonly path: string;
  readonly body: any;
  /** The `If-Match` version it carries, if any. */
  readonly ifMatch: number | null;
  readonly idempotencyKey: string;
  /** The session it was made in, sent as `X-Session-ID`. */
  readonly sessionId: string;
  /** `features`, `tracks`, `spikes`, `files`, `conversations`, or null (messages, publishes). */
  readonly collection: CollectionName | null;
  readonly kind:
    | "create" | "update" | "status" | "link" | "unlink" | "comment" | "remove"
    | "message" | "delta" | "complete" | "publish" | "publish_batch";
  /** The item (or message) it changes, if any. */
  readonly resourceId: string | null;
  readonly queuedAt: Timestamp;
  /** `"sending"` while a request for it is out. */
  readonly state: "queued" | "sending";
  /** Attempts that failed on the network, 5xx, 408, 429 or 401. */
  readonly attempts: number;
  readonly lastError: { status: number; code: string; message: string; details: Record<string, any> } | null;
}

/** What `outbox:rejected` listeners receive. */
export interface OutboxRejection {
  write: OutboxWrite;
  /** The refusal: 412 `precondition_failed` (`details.current`), 409, 403, 404, 422… */
  error: SwitchboardError;
}

/**
 * `sb.outbox`: writes made while the server could not be reached, sent in
 * order, each once, when it is back.
 */
export interface Outbox {
  /** False with `outbox: false`. */
  readonly enabled: boolean;
  /** Where the writes are kept; null until `ready`. */
  readonly storage: "indexeddb" | "memory" | "none" | null;
  /** Resolves once the writes kept by earlier pages are loaded. */
  readonly ready: Promise<void>;
  /** How many writes wait. */
  readonly size: number;
  /** The writes waiting, oldest first: a frozen array, the same until the outbox changes. */
  list(): readonly OutboxWrite[];
  /** `list()`, for `useSyncExternalStore`. */
  getSnapshot(): readonly OutboxWrite[];
  /** Calls `listener` whenever `list()` changes; returns the function that stops it. */
  subscribe(listener: () => void): () => void;
  /** Cancels a waiting write: never sent. False when it is being sent or already answered. */
  cancel(id: string): Promise<boolean>;
  /** Cancels every waiting write; resolves to how many. */
  clear(): Promise<number>;
  /** The server's answer once the write is sent; rejects with the refusal (code `cancelled` if cancelled). */
  sent<T = any>(id: string): Promise<T>;
}

/** `sb.events`: the log. */
export interface Events {
  list(filters?: EventFilters): Promise<EventList>;
  get(id: number): Promise<SwitchboardEvent>;
}

/** A subscription on channels (docs/subscriptions.md). */
export interface Subscription {
  id: string;
  kind: "webhook" | "pull";
  channels: string[];
  types: string[] | null;
  webhook: { url: string } | null;
  description: string | null;
  batch_size: number;
  lease_seconds: number;
  created_at: string;
  created_by: string;
  acked_through: number;
  head_id: number;
  delivered: number;
  state: "delivering" | "retrying" | "claimable";
  failures: number;
  last_error: string | null;
  next_attempt_at: string | null;
  last_success_at: string | null;
  claims: SubscriptionClaim[];
}

export interface SubscriptionClaim {
  id: string;
  first_id: number;
  last_id: number;
  size: number;
  worker: string | null;
  lease_expires_at: string;
}

export interface SubscriptionRequest {
  channels: string[];
  types?: string[];
  webhook?: { url: string };
  kind?: "webhook" | "pull";
  batch_size?: number;
  lease_seconds?: number;
  start?: "now" | "beginning" | number;
  description?: string;
}

export interface Subscriptions {
  list(): Promise<{ subscriptions: Subscription[] }>;
  get(id: string): Promise<Subscription>;
  put(id: string, body: SubscriptionRequest): Promise<Subscription>;
  delete(id: string): Promise<void>;
  retry(id: string): Promise<Subscription>;
  claim(
    id: string,
    options?: { worker?: string; max?: number; lease_seconds?: number; wait_seconds?: number },
  ): Promise<{ claim: SubscriptionClaim | null; events: SwitchboardEvent[] }>;
  ack(id: string, claimId: string): Promise<{ acked: number; acked_through: number }>;
  release(id: string, claimId: string): Promise<void>;
}

/** A client of one switchboard server. */
export class Switchboard {
  constructor(options?: SwitchboardOptions);

  /** The server's origin (no trailing slash). */
  url: string;
  token: TokenSource | null;
  agentId: string | null;
  sessionId: string;
  /** The shared stream's state. */
  readonly status: ConnectionStatus;
  /**
   * `"leader"`: this tab holds the browser's stream; `"follower"`: another
   * tab does and passes its events on; `"own"`: a stream of this
   * `Switchboard`'s own. `null` until the first subscription decides.
   */
  readonly streamRole: StreamRole | null;
  /** The session the stream is opened as (presence): `browser-…` when shared, else `sessionId`. */
  readonly streamSessionId: string;
  /**
   * Whether the server can be reached, as far as the page knows: false while
   * the browser is offline, and from a request that failed on the network
   * until the server answers again.
   */
  readonly online: boolean;
  /** Writes waiting for the server. */
  readonly outbox: Outbox;

  features: WorkItems<Feature, FeatureCreate, FeaturePatch, "features">;
  tracks: WorkItems<Track, TrackCreate, TrackPatch, "tracks">;
  spikes: WorkItems<Spike, SpikeCreate, SpikePatch, "spikes">;
  files: Files;
  conversations: Conversations;
  events: Events;
  subscriptions: Subscriptions;

  /** Adds a listener; returns the function that removes it. */
  on(name: "status", fn: (status: ConnectionStatus) => void): () => void;
  /** A background request failed (it is retried). */
  on(name: "error", fn: (error: SwitchboardError | Error) => void): () => void;
  on(name: "lockLost", fn: (info: LockLostInfo) => void): () => void;
  /** `online` changed. */
  on(name: "online", fn: (online: boolean) => void): () => void;
  on(name: "outbox:queued" | "outbox:cancelled", fn: (info: { write: OutboxWrite }) => void): () => void;
  on(name: "outbox:sent", fn: (info: { write: OutboxWrite; result: any }) => void): () => void;
  /** A queued write was refused; its pending change is gone from the views. */
  on(name: "outbox:rejected", fn: (info: OutboxRejection) => void): () => void;
  off(name: "status", fn: (status: ConnectionStatus) => void): void;
  off(name: "error", fn: (error: SwitchboardError | Error) => void): void;
  off(name: "lockLost", fn: (info: LockLostInfo) => void): void;
  off(name: string, fn: (value: any) => void): void;

  /**
   * Subscribes to events: `onEvent` gets each matching event once, in id
   * order, across reconnects and restarts.
   */
  subscribe(options: SubscribeOptions | undefined, onEvent: (event: SwitchboardEvent | ResyncEvent) => void): Subscription;

  /** A live collection. Throws a `TypeError` for any other name. */
  live(collection: "features"): LiveCollection<Feature>;
  live(collection: "tracks"): LiveCollection<Track>;
  live(collection: "spikes"): LiveCollection<Spike>;
  live(collection: "files"): LiveCollection<FileMetadata>;
  live(collection: "conversations"): LiveCollection<Conversation>;
  live(collection: CollectionName): LiveCollection<WorkItem | FileMetadata | Conversation>;

  /** One conversation with its messages, live; messages are read `pageSize` (200) at a time. */
  conversation(id: string, options?: { pageSize?: number }): LiveConversation;

  /** The sessions connected now, live. */
  presence(): LivePresence;

  /** Publishes an event on a channel of your own; answers the stored event (queued: `id` null). */
  publish(channel: string, type: string, data?: unknown, options?: PublishOptions): Promise<SwitchboardEvent | Queued<SwitchboardEvent>>;

  /** Publishes several events at once, all or nothing, with consecutive ids. */
  publishBatch(events: BatchEvent[], options?: WriteOptions): Promise<{ events: SwitchboardEvent[] } | Queued<{ events: SwitchboardEvent[] }>>;

  /** The sessions connected now, once. */
  sessions(): Promise<Sessions>;

  /** Closes the stream and releases every lease held; the outbox stops sending (what waits stays kept). */
  close(): Promise<void>;
}

export default Switchboard;
