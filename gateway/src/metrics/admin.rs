//! The admin listener: plain HTTP, `GET /metrics` in the Prometheus text format, and 404 for
//! anything else. Aggregate numbers only (see [`super`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{CONTENT_TYPE, Metrics};

/// The admin listener's routes: `GET /metrics`, with an oversight page `GET /oversight` and
/// `GET /oversight.json` (see [`crate::oversight`]), and 404 for anything else.
pub fn admin_router(
    metrics: Arc<Metrics>,
    oversight: Option<Arc<crate::oversight::Oversight>>,
) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let not_found = || async { (StatusCode::NOT_FOUND, "not found\n") };
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()) }
        })
        .fallback(not_found),
    );
    let Some(oversight) = oversight else {
        return router.fallback(not_found);
    };
    let unavailable = |error: anyhow::Error| {
        tracing::warn!(error = %format!("{error:#}"), "the oversight figures could not be computed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the oversight figures are not available now\n",
        )
            .into_response()
    };
    let page = oversight.clone();
    router
        .route(
            "/oversight",
            get(move || {
                let oversight = page.clone();
                async move {
                    match oversight.figures().await {
                        Ok(figures) => (
                            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                            crate::oversight::page::render(&figures),
                        )
                            .into_response(),
                        Err(error) => unavailable(error),
                    }
                }
            })
            .fallback(not_found),
        )
        .route(
            "/oversight.json",
            get(move || {
                let oversight = oversight.clone();
                async move {
                    match oversight.figures().await {
                        Ok(figures) => match serde_json::to_string(figures.as_ref()) {
                            Ok(json) => {
                                ([(header::CONTENT_TYPE, "application/json")], json).into_response()
                            }
                            Err(error) => unavailable(error.into()),
                        },
                        Err(error) => unavailable(error),
                    }
                }
            })
            .fallback(not_found),
        )
        .fallback(not_found)
}

/// Serves [`admin_router`] on `listener` (plain HTTP) until `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    oversight: Option<Arc<crate::oversight::Oversight>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(metrics, oversight))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the admin listener, warning when it is reachable beyond this host.
pub async fn bind_admin(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding admin.listen {address}"))?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the admin listener (plain HTTP, metrics only) is not on a loopback address");
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[tokio::test]
    async fn the_admin_router_serves_only_get_metrics() {
        use axum::body::Body;
        use axum::http::{Method, Request, StatusCode, header};
        use tower::ServiceExt;
        let metrics = Arc::new(Metrics::new());
        metrics.published(1);
        let call = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            admin_router(metrics.clone(), None).oneshot(request)
        };
        let response = call(Method::GET, "/metrics").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            sample(&body, "cordon_published_indicators_total"),
            Some("1")
        );
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/metrics/x"),
            (Method::GET, "/debug"),
            (Method::POST, "/metrics"),
            (Method::DELETE, "/metrics"),
        ] {
            let response = call(method.clone(), path).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
}
