// A React page bound to switchboard's live features through
// `useSyncExternalStore`, with the hook of docs/client.md. The test
// (tests/api/client_tabs.rs) bundles it with esbuild, `/client.js` left as
// an import of the page's origin, and reads `window.reactLog`.
import { StrictMode, useLayoutEffect, useSyncExternalStore } from "react";
import { createRoot } from "react-dom/client";
import { Switchboard } from "/client.js";

function useLive(live) {
  return useSyncExternalStore(live.subscribe, live.getSnapshot);
}

const log = {
  renders: 0,
  commits: [],
  torn: [],
  errors: [],
  /** Every snapshot the store handed out, as `cursor|id:version,…`. */
  snapshots: new Set(),
};
window.reactLog = log;
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => {
    log.errors.push(`${level}: ${args.map(String).join(" ")}`);
    original.apply(console, args);
  };
}

const key = (snapshot) =>
  `${snapshot.cursor}|${[...snapshot.items].sort((a, b) => a.id.localeCompare(b.id)).map((f) => `${f.id}:${f.version}`).join(",")}`;

const sb = new Switchboard({ agentId: "react-page" });
const features = sb.live("features");
window.sb = sb;
window.features = features;
let last = null;
log.handedOut = 0;
features.subscribe((snapshot) => {
  if (snapshot === last) return;
  last = snapshot;
  log.handedOut++;
  log.snapshots.add(key(snapshot));
});

function Count() {
  const { items, cursor, loaded } = useLive(features);
  return <p id="count" data-cursor={cursor ?? ""}>{loaded ? `${items.length} features` : "loading"}</p>;
}

function Board() {
  const snapshot = useLive(features);
  log.renders++;
  // After every commit of the board (layout effects run once the whole
  // commit is in the DOM): both components show one and the same snapshot,
  // and one the store handed out.
  useLayoutEffect(() => {
    const count = document.getElementById("count");
    const board = document.getElementById("board");
    const shown = [...board.children].map((li) => `${li.dataset.id}:${li.dataset.version}`).join(",");
    const commit = { cursor: board.dataset.cursor, key: board.dataset.key, count: count.textContent, items: board.children.length };
    log.commits.push(commit);
    const consistent =
      count.dataset.cursor === board.dataset.cursor &&
      (count.textContent === "loading" || count.textContent === `${board.children.length} features`) &&
      board.dataset.key === `${board.dataset.cursor === "" ? "null" : board.dataset.cursor}|${shown}`;
    if (!consistent) log.torn.push(commit);
  });
  const sorted = [...snapshot.items].sort((a, b) => a.id.localeCompare(b.id));
  return (
    <ul id="board" data-cursor={snapshot.cursor ?? ""} data-key={key(snapshot)}>
      {sorted.map((f) => (
        <li key={f.id} data-id={f.id} data-version={f.version}>{f.title}</li>
      ))}
    </ul>
  );
}

function App() {
  return (
    <>
      <Count />
      <Board />
    </>
  );
}

const mount = document.createElement("div");
document.body.replaceChildren(mount);
createRoot(mount).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
