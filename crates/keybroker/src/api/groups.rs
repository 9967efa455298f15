//! Public group routes: `GET /v1/groups/{group}/recipient`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use layercrypt_proto::payload::GroupName;

use super::{ApiError, AppState};
use crate::service::Recipient;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/groups/{group}/recipient", get(recipient))
}

/// Parses a group name from the path (400 if it cannot be one).
pub(super) fn group_name(raw: String) -> Result<GroupName, ApiError> {
    GroupName::try_from(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn recipient(
    State(state): State<AppState>,
    Path(group): Path<String>,
) -> Result<Json<Recipient>, ApiError> {
    let group = group_name(group)?;
    Ok(Json(state.broker().recipient(&group).await?))
}
