//! Routes. Each handler carries its OpenAPI description; `/openapi.json` is built from them.

mod groups;
mod ops;
mod records;
mod topics;

use crate::server::AppState;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(info(
    title = "Weir HTTP API",
    description = "Topics, records, consumer groups and operations of a Weir broker"
))]
struct ApiDoc;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body_max = state.config.body_bytes_max;
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(topics::list_topics, topics::create_topic))
        .routes(routes!(topics::describe_topic, topics::delete_topic))
        .routes(routes!(topics::alter_configs))
        .routes(routes!(records::produce, records::read))
        .routes(routes!(records::subscribe))
        .routes(routes!(groups::list_groups))
        .routes(routes!(groups::describe_group))
        .with_state(state)
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route("/openapi.json", axum::routing::get(move || ops::openapi(doc.clone())))
        .layer(DefaultBodyLimit::max(body_max))
}
