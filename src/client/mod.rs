//! What the server's own clients share. The CLI (`cli/`) and the MCP server
//! (`mcp/`) speak to a switchboard server over HTTP like any other client;
//! neither imports the other (the CLI's `migrate` and `prune` open the
//! database through `store`; nothing else of the server is theirs).

pub mod sse;
