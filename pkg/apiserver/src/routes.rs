//! Resource URLs: parse `/api/v1/...` and `/apis/<g>/<v>/...` into a resource, namespace, name
//! and subresource, and dispatch by method to the registry verbs.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kubelite_api::resource::{find_builtin, ResourceInfo};
use serde_json::Value;

use crate::body::{self, Output};
use crate::error::{ApiError, Result};
use crate::registry::delete::DeleteOptions;
use crate::registry::update::Part;
use crate::registry::{self, subresources, Ctx, Params, Reply};
use crate::table::{self, Include};
use crate::AppState;

/// What a resource URL addresses.
#[derive(Debug, PartialEq)]
pub enum Addr {
    Collection,
    Object(String),
    Sub(String, String),
}

/// A parsed resource URL.
pub struct Parsed {
    pub info: &'static ResourceInfo,
    /// The custom resource entry when the URL names one.
    pub custom: Option<crate::crd::Entry>,
    pub namespace: Option<String>,
    pub addr: Addr,
    /// A legacy `/watch/` path.
    pub watch: bool,
}

/// Parse the segments after the group-version (built-in resources only).
pub fn parse(group: &str, version: &str, segs: &[&str]) -> Option<Parsed> {
    parse_with(group, version, segs, |_| None)
}

/// Parse the segments after the group-version; `custom` looks up served custom resources.
pub fn parse_with(
    group: &str,
    version: &str,
    segs: &[&str],
    custom: impl Fn(&str) -> Option<crate::crd::Entry>,
) -> Option<Parsed> {
    let (watch, segs) = match segs.first() {
        Some(&"watch") => (true, &segs[1..]),
        _ => (false, segs),
    };
    let find = |plural: &str| -> Option<(&'static ResourceInfo, Option<crate::crd::Entry>)> {
        match find_builtin(group, version, plural) {
            Some(info) => Some((info, None)),
            None => custom(plural).map(|e| (e.info, Some(e))),
        }
    };
    let ((info, entry), namespace, rest): (_, Option<String>, &[&str]) = match segs {
        ["namespaces", ns, res, rest @ ..] if find(res).is_some_and(|i| i.0.namespaced()) => {
            (find(res)?, Some((*ns).to_string()), rest)
        }
        [res, rest @ ..] => (find(res)?, None, rest),
        [] => return None,
    };
    let addr = match rest {
        [] => Addr::Collection,
        [name] => Addr::Object((*name).to_string()),
        [name, sub] => Addr::Sub((*name).to_string(), (*sub).to_string()),
        _ => return None,
    };
    // Namespaced objects need a namespace (all-namespaces only for collections).
    if info.namespaced() && namespace.is_none() && addr != Addr::Collection {
        return None;
    }
    Some(Parsed {
        info,
        custom: entry,
        namespace,
        addr,
        watch,
    })
}

fn json_response(reply: Reply) -> Response {
    let code = StatusCode::from_u16(reply.code).unwrap_or(StatusCode::OK);
    let bytes = match reply.json() {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut resp = (code, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for w in reply.warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            h.append("warning", v);
        }
    }
    resp
}

/// A 200 `application/json` answer from already encoded bytes.
fn bytes_response(body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Render a GET answer (object or list) as JSON or a Table.
fn render(
    ctx: &Ctx,
    mut reply: Reply,
    output: Output,
    params: &Params,
    is_list: bool,
) -> Result<Response> {
    let Output::Table(version) = output else {
        return Ok(json_response(reply));
    };
    let include = Include::parse(params.get("includeObject"))?;
    let code = reply.code;
    let warnings = std::mem::take(&mut reply.warnings);
    let obj = reply.into_value()?;
    let body = if is_list {
        let items: Vec<&Value> = obj
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        table::table(
            ctx.strategy.as_ref(),
            version,
            &items,
            include,
            table::list_meta(&obj),
            true,
        )
    } else {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        table::table(
            ctx.strategy.as_ref(),
            version,
            &[&obj],
            include,
            serde_json::json!({"resourceVersion": rv}),
            true,
        )
    };
    Ok(json_response(Reply::new(code, body, warnings)))
}

/// Entry point for every `/api/...` and `/apis/...` request.
pub async fn handle(State(state): State<AppState>, req: Request) -> Response {
    match handle_inner(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle_inner(state: AppState, req: Request) -> Result<Response> {
    let (mut parts, body) = req.into_parts();
    // Only streaming subresources (exec, attach, portforward) take the connection over.
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The user agent names the field manager of writes without `fieldManager`.
    let params = Params(
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default(),
    )
    .with_user_agent(
        parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    let (group, version, rest) = match segs.as_slice() {
        ["api"] | ["apis"] | ["api", _] | ["apis", _] | ["apis", _, _] => {
            return crate::nonresource::discovery(&state, &segs, &parts.headers, &parts.method)
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let reg = &state.registry;
    let parsed = parse_with(group, version, rest, |plural| {
        reg.crds.find(group, version, plural)
    })
    .ok_or_else(ApiError::no_route)?;
    let ctx = match &parsed.custom {
        Some(e) => {
            let mut ctx =
                Ctx::with_strategy(parsed.info, e.strategy.clone(), parsed.namespace.clone());
            ctx.rewrite_api_version = e.multi_version;
            ctx
        }
        None => Ctx::new(parsed.info, parsed.namespace.clone()),
    };
    let method = parts.method.clone();
    let is_crd = parsed.info.group == "apiextensions.k8s.io";
    let is_namespace = parsed.info.group.is_empty() && parsed.info.plural == "namespaces";
    let resp = dispatch(
        &state,
        parsed,
        ctx,
        params,
        method.clone(),
        parts.headers,
        body,
        on_upgrade,
    )
    .await;
    // A written CRD is served (or withdrawn) by the reconcile task: wake it at once.
    if is_crd && method != Method::GET && resp.is_ok() {
        reg.crds.kick.notify_one();
    }
    // A finalized namespace is removed by the lifecycle task: wake it too.
    if is_namespace && method != Method::GET && resp.is_ok() {
        reg.namespace_kick.notify_one();
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: &AppState,
    parsed: Parsed,
    ctx: Ctx,
    params: Params,
    method: Method,
    headers: HeaderMap,
    body: Body,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response> {
    let reg = &state.registry;
    let output = body::negotiate(&headers);
    match (&parsed.addr, &method) {
        (Addr::Collection, &Method::GET) => {
            if parsed.watch || params.flag("watch") {
                return registry::watch::watch(reg.clone(), ctx, &params, output).await;
            }
            let page = registry::list::list(reg, &ctx, &params).await?;
            if let Output::Json = output {
                // Large lists: serialise straight from the (possibly cached) items.
                return Ok(bytes_response(page.to_json(&ctx)));
            }
            render(&ctx, Reply::ok(page.to_list(&ctx)), output, &params, true)
        }
        (Addr::Collection, &Method::POST) => {
            require_namespace(&ctx, &parsed)?;
            let (obj, dups) = decode_checked(&headers, &params, body).await?;
            Ok(json_response(
                registry::create::create_checked(reg, &ctx, &params, obj, dups).await?,
            ))
        }
        (Addr::Collection, &Method::DELETE) => {
            let opts = delete_options(&headers, body, &params).await?;
            Ok(json_response(
                registry::delete::delete_collection(reg, &ctx, &params, &opts).await?,
            ))
        }
        (Addr::Object(name), &Method::GET) => {
            if parsed.watch || params.flag("watch") {
                let mut p = params.clone();
                p.0.push(("fieldSelector".into(), format!("metadata.name={name}")));
                return registry::watch::watch(reg.clone(), ctx, &p, output).await;
            }
            render(
                &ctx,
                registry::get(reg, &ctx, name).await?,
                output,
                &params,
                false,
            )
        }
        (Addr::Object(name), &Method::PUT) => {
            let (obj, dups) = decode_checked(&headers, &params, body).await?;
            Ok(json_response(
                registry::update::update_checked(reg, &ctx, name, Part::Main, &params, obj, dups)
                    .await?,
            ))
        }
        (Addr::Object(name), &Method::PATCH) => {
            let bytes = body::read(body).await?;
            let ct = body::media_type(&headers);
            Ok(json_response(
                registry::update::patch(reg, &ctx, name, Part::Main, &params, &ct, &bytes).await?,
            ))
        }
        (Addr::Object(name), &Method::DELETE) => {
            let opts = delete_options(&headers, body, &params).await?;
            Ok(json_response(
                registry::delete::delete(reg, &ctx, name, &opts).await?,
            ))
        }
        (Addr::Sub(name, sub), _) => {
            let req = SubRequest {
                method: &method,
                headers: &headers,
                params: &params,
                on_upgrade,
            };
            subresource(state, &ctx, name, sub, req, body).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn require_namespace(ctx: &Ctx, parsed: &Parsed) -> Result<()> {
    if ctx.info.namespaced() && parsed.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    Ok(())
}

async fn decode_checked(
    headers: &HeaderMap,
    params: &Params,
    body: Body,
) -> Result<(Value, Vec<String>)> {
    let bytes = body::read(body).await?;
    // fieldValidation=Ignore drops duplicate reports anyway: skip the extra pass over the body.
    if params.get("fieldValidation") == Some("Ignore") {
        return Ok((body::decode(headers, &bytes)?, Vec::new()));
    }
    body::decode_checked(headers, &bytes)
}

async fn decode_body(headers: &HeaderMap, body: Body) -> Result<Value> {
    let bytes = body::read(body).await?;
    body::decode(headers, &bytes)
}

async fn delete_options(headers: &HeaderMap, body: Body, params: &Params) -> Result<DeleteOptions> {
    let bytes = body::read(body).await?;
    let opts = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(body::decode(headers, &bytes)?)
    };
    DeleteOptions::parse(params, opts.as_ref())
}

/// The client's request as a subresource sees it.
type SubRequest<'a> = crate::proxy::StreamRequest<'a>;

async fn subresource(
    state: &AppState,
    ctx: &Ctx,
    name: &str,
    sub: &str,
    req: SubRequest<'_>,
    body: Body,
) -> Result<Response> {
    let reg = &state.registry;
    let (method, headers, params) = (req.method, req.headers, req.params);
    if ctx.info.subresource(sub).is_none() {
        return Err(ApiError::no_route());
    }
    let output = body::negotiate(headers);
    match (sub, method) {
        ("status", &Method::GET) => render(
            ctx,
            registry::get(reg, ctx, name).await?,
            output,
            params,
            false,
        ),
        ("status" | "finalize", &Method::PUT) => {
            let (obj, dups) = decode_checked(headers, params, body).await?;
            let part = Part::from_sub(Some(sub))?;
            Ok(json_response(
                registry::update::update_checked(reg, ctx, name, part, params, obj, dups).await?,
            ))
        }
        ("status", &Method::PATCH) => {
            let bytes = body::read(body).await?;
            let ct = body::media_type(headers);
            Ok(json_response(
                registry::update::patch(reg, ctx, name, Part::Status, params, &ct, &bytes).await?,
            ))
        }
        ("scale", &Method::GET) => Ok(json_response(
            subresources::get_scale(reg, ctx, name).await?,
        )),
        ("scale", &Method::PUT) => {
            let obj = decode_body(headers, body).await?;
            if registry::name_of(&obj) != name && !registry::name_of(&obj).is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    registry::name_of(&obj)
                )));
            }
            Ok(json_response(
                subresources::write_scale(reg, ctx, name, params, Some(obj), None).await?,
            ))
        }
        ("scale", &Method::PATCH) => {
            let bytes = body::read(body).await?;
            let ct = body::media_type(headers);
            Ok(json_response(
                subresources::write_scale(reg, ctx, name, params, None, Some((&ct, &bytes)))
                    .await?,
            ))
        }
        ("binding", &Method::POST) => {
            let obj = decode_body(headers, body).await?;
            Ok(json_response(
                subresources::bind(reg, ctx, name, params, obj).await?,
            ))
        }
        ("eviction", &Method::POST) => {
            let obj = decode_body(headers, body).await?;
            Ok(json_response(
                subresources::evict(reg, ctx, name, params, obj).await?,
            ))
        }
        ("log" | "exec" | "attach" | "portforward", _) => {
            crate::proxy::handle(reg, ctx, name, sub, req).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shapes() {
        let p = parse(
            "",
            "v1",
            &["namespaces", "default", "pods", "web", "status"],
        )
        .expect("pod status");
        assert_eq!(p.info.plural, "pods");
        assert_eq!(p.addr, Addr::Sub("web".into(), "status".into()));
        let p = parse("", "v1", &["namespaces", "default"]).expect("namespace object");
        assert_eq!(p.info.plural, "namespaces");
        assert_eq!(p.addr, Addr::Object("default".into()));
        let p = parse("", "v1", &["namespaces", "x", "finalize"]).expect("finalize");
        assert_eq!(p.addr, Addr::Sub("x".into(), "finalize".into()));
        let p = parse("apps", "v1", &["deployments"]).expect("all-namespaces list");
        assert!(p.namespace.is_none());
        assert!(parse("", "v1", &["pods", "web"]).is_none());
        assert!(parse("", "v1", &["nope"]).is_none());
        let p = parse("", "v1", &["watch", "namespaces", "a", "pods"]).expect("legacy watch");
        assert!(p.watch);
    }
}
