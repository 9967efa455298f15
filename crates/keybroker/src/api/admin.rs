//! Admin routes under `/v1/admin`: groups, grants, rotation, audit log. Every change is an
//! audit record (kind `admin`) written before the answer ([`crate::service::Broker`]).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use time::OffsetDateTime;

use super::extract::{Admin, JsonBody};
use super::groups::group_name;
use super::{ApiError, AppState};
use crate::model::{AuditEvent, AuditKind, AuditQuery, Grant, Group};
use crate::service::NewGrant;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/groups", post(create_group).get(list_groups))
        .route(
            "/v1/admin/groups/{group}",
            get(show_group).delete(delete_group),
        )
        .route("/v1/admin/groups/{group}/grants", post(add_grant))
        .route("/v1/admin/groups/{group}/grants/{id}", delete(remove_grant))
        .route("/v1/admin/groups/{group}/rotate", post(rotate))
        .route("/v1/admin/audit", get(audit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: String,
}

async fn create_group(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let name = group_name(body.name)?;
    tracing::info!(admin = %admin.who(), group = %name, "admin: create group");
    Ok((
        StatusCode::CREATED,
        Json(state.broker().create_group(admin.actor(), &name).await?),
    ))
}

async fn list_groups(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(state.broker().groups().await?))
}

async fn show_group(
    State(state): State<AppState>,
    _admin: Admin,
    Path(group): Path<String>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(state.broker().group(&group_name(group)?).await?))
}

async fn delete_group(
    State(state): State<AppState>,
    admin: Admin,
    Path(group): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = group_name(group)?;
    tracing::info!(admin = %admin.who(), group = %name, "admin: delete group");
    state.broker().delete_group(admin.actor(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_grant(
    State(state): State<AppState>,
    admin: Admin,
    Path(group): Path<String>,
    JsonBody(body): JsonBody<NewGrant>,
) -> Result<(StatusCode, Json<Grant>), ApiError> {
    let name = group_name(group)?;
    tracing::info!(admin = %admin.who(), group = %name, "admin: add grant");
    let grant = state.broker().add_grant(admin.actor(), &name, body).await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

async fn remove_grant(
    State(state): State<AppState>,
    admin: Admin,
    Path((group, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = group_name(group)?;
    tracing::info!(admin = %admin.who(), group = %name, grant = %id, "admin: remove grant");
    state
        .broker()
        .remove_grant(admin.actor(), &name, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(state): State<AppState>,
    admin: Admin,
    Path(group): Path<String>,
) -> Result<Json<Group>, ApiError> {
    let name = group_name(group)?;
    tracing::info!(admin = %admin.who(), group = %name, "admin: rotate");
    Ok(Json(state.broker().rotate(admin.actor(), &name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    group: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
    kind: Option<String>,
}

async fn audit(
    State(state): State<AppState>,
    _admin: Admin,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let Query(params) = params.map_err(|_| {
        ApiError::BadRequest(
            "query parameters are group, subject, since (RFC 3339), limit, kind".into(),
        )
    })?;
    let kind = params
        .kind
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<AuditKind>())
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let since = params
        .since
        .filter(|s| !s.is_empty())
        .map(|s| OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|_| ApiError::BadRequest("since must be an RFC 3339 time".into()))?;
    let query = AuditQuery {
        group: params.group.filter(|s| !s.is_empty()),
        subject: params.subject.filter(|s| !s.is_empty()),
        since,
        limit: params.limit,
        kind,
    };
    Ok(Json(state.broker().audit(query).await?))
}
