//! An instance's Pusher app as Evolution's `/pusher/set` body gives it
//! (`{"pusher":{"enabled","appId","key","secret","cluster","useTLS","events"}}`, plus our
//! `endpoint`), and what `/pusher/find` shows of it (never the secret).

use serde_json::{json, Map, Value};

use super::{PusherApp, PusherTarget};
use crate::sinks::settings::{bool_field, string_field, FieldError, InstanceSettings};
use crate::sinks::SinkTarget;

/// Reads the object: off unless `enabled`; when on, `appId`, `key` and `secret` are
/// required, and `cluster` unless an `endpoint` replaces the cluster's host.
pub(super) fn read(obj: &Map<String, Value>, prefix: &str) -> Result<InstanceSettings, FieldError> {
    let field = |f: &str| format!("{prefix}.{f}");
    let string = |f: &str| string_field(obj, f).map_err(|e| FieldError::new(&field(f), e.rule));
    let enabled = bool_field(obj, "enabled")
        .map_err(|e| FieldError::new(&field("enabled"), e.rule))?
        .unwrap_or(false);
    let use_tls = bool_field(obj, "useTLS")
        .map_err(|e| FieldError::new(&field("useTLS"), e.rule))?
        .unwrap_or(true);
    let (app_id, key, secret) = (string("appId")?, string("key")?, string("secret")?);
    let (cluster, endpoint) = (string("cluster")?, string("endpoint")?);
    if let Some(app_id) = &app_id {
        if !app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(FieldError::new(
                &field("appId"),
                "must be letters, digits, `-` or `_` (Pusher's app ids are digits)",
            ));
        }
    }
    if let Some(cluster) = &cluster {
        // It becomes part of a host name (`api-{cluster}.pusher.com`).
        if !cluster
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(FieldError::new(
                &field("cluster"),
                "must be a Pusher cluster name (lowercase letters, digits, `-`: `mt1`, `eu`)",
            ));
        }
    }
    if let Some(endpoint) = &endpoint {
        check_endpoint(endpoint).map_err(|rule| FieldError::new(&field("endpoint"), rule))?;
    }
    if !enabled {
        return Ok(InstanceSettings {
            enabled,
            stored: None,
        });
    }
    let required = |value: Option<String>, f: &str| {
        value.ok_or_else(|| FieldError::new(&field(f), "is required when Pusher is enabled"))
    };
    let app = PusherApp {
        app_id: required(app_id, "appId")?,
        key: required(key, "key")?,
        secret: required(secret, "secret")?,
        cluster: match (&cluster, &endpoint) {
            (None, None) => {
                return Err(FieldError::new(
                    &field("cluster"),
                    "is required when Pusher is enabled (unless an endpoint replaces it)",
                ))
            }
            _ => cluster.unwrap_or_default(),
        },
        use_tls,
        endpoint,
    };
    Ok(InstanceSettings {
        enabled,
        stored: Some(SinkTarget::Pusher(PusherTarget { app: Some(app) })),
    })
}

/// What `/pusher/find` shows of the app (Evolution's field names); the secret never.
pub(super) fn show(stored: &SinkTarget, view: &mut Map<String, Value>) {
    let SinkTarget::Pusher(PusherTarget { app: Some(app) }) = stored else {
        return;
    };
    view.insert("appId".into(), json!(app.app_id));
    view.insert("key".into(), json!(app.key));
    view.insert("cluster".into(), json!(app.cluster));
    view.insert("useTLS".into(), json!(app.use_tls));
    if let Some(endpoint) = &app.endpoint {
        view.insert("endpoint".into(), json!(endpoint));
    }
}

/// An endpoint override must be a bare `http(s)://host[:port]`: requests are signed over
/// the path `/apps/{app_id}/...`, so a path of its own would break every signature.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    const RULE: &str =
        "must be an http(s) URL with no path, query or credentials (`http://soketi:6001`)";
    let url = url::Url::parse(endpoint).map_err(|_| RULE)?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if bare {
        Ok(())
    } else {
        Err(RULE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"enabled": "yes"}), "pusher.enabled"),
            (
                json!({"enabled": true, "key": "k", "secret": "s", "cluster": "mt1"}),
                "pusher.appId",
            ),
            (
                json!({"enabled": true, "appId": "1", "secret": "s", "cluster": "mt1"}),
                "pusher.key",
            ),
            (
                json!({"enabled": true, "appId": "1", "key": "k", "cluster": "mt1"}),
                "pusher.secret",
            ),
            (
                json!({"enabled": true, "appId": "1", "key": "k", "secret": "s"}),
                "pusher.cluster",
            ),
            (json!({"appId": "1/../x"}), "pusher.appId"),
            (json!({"cluster": "evil.test/x#"}), "pusher.cluster"),
            (json!({"useTLS": 1}), "pusher.useTLS"),
            (json!({"secret": 5}), "pusher.secret"),
            (json!({"endpoint": "http://x.test/apps"}), "pusher.endpoint"),
            (json!({"endpoint": "ftp://x.test"}), "pusher.endpoint"),
        ];
        for (body, field) in cases {
            let err = read(&obj(body.clone()), "pusher").unwrap_err();
            assert_eq!(err.field, field, "{body}: {err:?}");
        }
    }

    #[test]
    fn off_needs_nothing_else() {
        let read = read(&obj(json!({"enabled": false})), "pusher").unwrap();
        assert!(!read.enabled);
        assert_eq!(read.stored, None);
    }

    #[test]
    fn an_enabled_app_is_the_stored_target() {
        let body =
            json!({"enabled": true, "appId": "1", "key": "k", "secret": "s", "cluster": "mt1"});
        let read = read(&obj(body), "pusher").unwrap();
        assert!(read.enabled);
        let Some(SinkTarget::Pusher(PusherTarget { app: Some(app) })) = read.stored else {
            panic!("an app");
        };
        assert_eq!((app.app_id.as_str(), app.use_tls), ("1", true));
    }

    #[test]
    fn find_shows_the_app_but_never_the_secret() {
        let stored = SinkTarget::Pusher(PusherTarget {
            app: Some(PusherApp {
                app_id: "42".into(),
                key: "k".into(),
                secret: "topsecret".into(),
                cluster: "eu".into(),
                use_tls: true,
                endpoint: None,
            }),
        });
        let mut view = Map::new();
        show(&stored, &mut view);
        assert_eq!(
            Value::Object(view.clone()),
            json!({"appId": "42", "key": "k", "cluster": "eu", "useTLS": true})
        );
        assert!(!Value::Object(view).to_string().contains("topsecret"));
    }

    #[test]
    fn endpoints_are_bare_http_urls() {
        assert!(check_endpoint("http://127.0.0.1:6001").is_ok());
        assert!(check_endpoint("https://soketi.internal/").is_ok());
        for bad in [
            "soketi:6001",
            "http://u:p@x.test",
            "http://x.test/p",
            "http://x.test?q=1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
