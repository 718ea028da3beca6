//! The MCP server's answers outside the tools themselves: its description
//! of itself, and refused arguments worded as every other tool error.

use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool_handler, ErrorData, ServerHandler};
use serde_json::json;

use super::{failed, Tools};
use crate::mcp::api::ApiFailure;

/// What rmcp answers when a tool's arguments do not deserialize: a tool
/// error whose only content is this text, with no structured content.
const ARGUMENTS_REFUSED: &str = "failed to deserialize parameters:";

/// A tool error for arguments that do not fit the tool's schema, in the
/// shape of every other tool error (`{status, code, message, details}`), so
/// that an agent reads one kind of error whatever went wrong.
fn arguments_refused(tool: &str, result: CallToolResult) -> CallToolResult {
    let refused = result.is_error == Some(true)
        && result.structured_content.is_none()
        && result.content.len() == 1;
    let why = result
        .content
        .first()
        .and_then(ContentBlock::as_text)
        .and_then(|text| text.text.strip_prefix(ARGUMENTS_REFUSED))
        .map(str::trim);
    match why {
        Some(why) if refused => failed(ApiFailure {
            status: 0,
            code: "invalid_arguments".into(),
            message: format!(
                "the arguments of {tool} do not fit its input schema: {why}; nothing was done"
            ),
            details: json!({ "tool": tool }),
        }),
        _ => result,
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        Ok(match self.tool_router.call(call).await? {
            rmcp::model::CallToolResponse::Complete(result) => {
                arguments_refused(&tool, result).into()
            }
            other => other,
        })
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "switchboard",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "switchboard at {}: the shared board (features, tracks, spikes), files with \
                 locks, and events of the other agents and people. You are session {}. \
                 Claim work with set_status in_progress; lock_file before save_file; \
                 call wait_for_events to see what others did since your last call.",
                self.api.base(),
                self.api.session_id
            ))
    }
}
