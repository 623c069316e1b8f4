//! The Prometheus exporter-toolkit web config file (`--web.config.file`): TLS and
//! bcrypt basic auth. (Being completed: see issue 2.)

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::ConfigError;

/// Loaded web config: what the server needs to apply it.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl WebConfig {
    /// No TLS, no auth.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Err(ConfigError::new(
            path.display().to_string(),
            "web config files are not supported yet",
        ))
    }
}

/// Users and their bcrypt hashes.
#[derive(Debug, Default)]
pub struct BasicAuth {}

impl BasicAuth {
    pub async fn check(&self, _authorization: Option<&axum::http::HeaderValue>) -> bool {
        false
    }
}

/// Middleware: 401 with a `WWW-Authenticate` challenge unless the credentials check out.
pub async fn require_basic_auth(
    State(auth): State<Arc<BasicAuth>>,
    req: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse;
    if auth
        .check(req.headers().get(axum::http::header::AUTHORIZATION))
        .await
    {
        return next.run(req).await;
    }
    (
        axum::http::StatusCode::UNAUTHORIZED,
        [(
            axum::http::header::WWW_AUTHENTICATE,
            "Basic realm=\"vigia\"",
        )],
        "Unauthorized\n",
    )
        .into_response()
}
