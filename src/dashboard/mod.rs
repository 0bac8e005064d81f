//! `/dashboard`: the operator's web dashboard. Static assets compiled into the binary; the
//! pages talk to the admin API (and `/v1` for the playground) with the admin key the operator
//! signs in with, like any other client. No route here reads or changes gateway state.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

/// Scripts and styles only from this origin, no inline code, no framing, requests only back
/// to the gateway. `data:` images let the page use an empty favicon.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: &str = include_str!("assets/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/api.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/ui.js"),
    },
    Asset {
        name: "charts.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/charts.js"),
    },
    Asset {
        name: "csv.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/csv.js"),
    },
    Asset {
        name: "limits.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/limits.js"),
    },
    Asset {
        name: "teams.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/teams.js"),
    },
    Asset {
        name: "batches.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/batches.js"),
    },
    Asset {
        name: "highlight.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/highlight.js"),
    },
    Asset {
        name: "editor.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/editor.js"),
    },
    Asset {
        name: "i18n.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/i18n.js"),
    },
    Asset {
        name: "lang-en.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/lang-en.js"),
    },
    Asset {
        name: "lang-zh.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/lang-zh.js"),
    },
    Asset {
        name: "theme.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/theme.js"),
    },
    Asset {
        name: "forms.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/forms.js"),
    },
    Asset {
        name: "costs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/costs.js"),
    },
    Asset {
        name: "latency.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/latency.js"),
    },
    Asset {
        name: "pages.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/pages.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/dashboard", "/dashboard/"])
            .route(web::get().to(index))
            .route(web::head().to(index)),
    )
    .service(
        web::resource("/dashboard/assets/{name}")
            .route(web::get().to(asset))
            .route(web::head().to(asset)),
    );
}

fn respond(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // Assets change with the binary; revalidating is cheap and never serves a stale mix.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    res.body(body)
}

async fn index() -> HttpResponse {
    respond("text/html; charset=utf-8", INDEX)
}

async fn asset(name: web::Path<String>) -> Result<HttpResponse, crate::error::ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .map(|a| respond(a.content_type, a.body))
        .ok_or_else(|| crate::error::ApiError::not_found(format!("no dashboard asset `{name}`")))
}
