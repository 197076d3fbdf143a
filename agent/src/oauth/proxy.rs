//! Proxies, from the environment the agent was started with, read as curl
//! reads it: `https_proxy`/`HTTPS_PROXY` for https URLs, `all_proxy`/
//! `ALL_PROXY` when those are unset, and `no_proxy`/`NO_PROXY` for the hosts
//! that go direct. The lower-case form wins when both are set. Credentials
//! in a proxy URL are used, never shown.
//!
//! Unlike curl, a plain-http request never goes through a proxy, whatever
//! `http_proxy` says: the agent sends plain http only to loopback, and a
//! proxy would see the client secret or assertion in clear text and could
//! answer with a token of its own.

use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use std::sync::OnceLock;
use url::Url;

/// The proxy settings in use.
pub(crate) struct Proxies {
    matcher: Matcher,
    /// The proxy URL for https requests, as given (with any credentials),
    /// and the variable it came from.
    https: Option<(String, &'static str)>,
}

impl Proxies {
    /// Reads the settings with `get` (the environment, or a test's map).
    pub(crate) fn from_vars(get: impl Fn(&str) -> Option<String>) -> Proxies {
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| {
                get(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (v, name))
            })
        };
        let all = first(&["all_proxy", "ALL_PROXY"]);
        let https = first(&["https_proxy", "HTTPS_PROXY"]).or(all);
        let no = first(&["no_proxy", "NO_PROXY"]).map(|(v, _)| v);
        let mut builder = Matcher::builder();
        if let Some((url, _)) = &https {
            builder = builder.https(url.clone());
        }
        Proxies {
            matcher: builder.no(no.unwrap_or_default()).build(),
            https,
        }
    }

    /// The proxy `url` goes through, as given (credentials included: for
    /// the HTTP client only).
    pub(crate) fn target(&self, url: &Url) -> Option<&str> {
        self.route(url).map(|((given, _), _)| given.as_str())
    }

    /// The proxy `url` goes through as it may be shown: scheme, host and
    /// port, and the variable that set it.
    pub(crate) fn describe(&self, url: &Url) -> Option<String> {
        let ((_, var), proxy) = self.route(url)?;
        let shown = proxy.uri().to_string();
        Some(format!("{} (from {var})", shown.trim_end_matches('/')))
    }

    /// The proxy for `url`, if any: as given with the variable that set it,
    /// and as the matcher parsed it (its address, credentials apart).
    fn route(&self, url: &Url) -> Option<(&(String, &'static str), Intercept)> {
        let uri = url.as_str().parse::<http::Uri>().ok()?;
        let proxy = self.matcher.intercept(&uri)?;
        // Plain http goes direct (see the module's comment).
        if url.scheme() != "https" {
            return None;
        }
        let given = self.https.as_ref()?;
        Some((given, proxy))
    }

    /// `builder` with these proxies and no others.
    pub(crate) fn apply(&'static self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.no_proxy().proxy(reqwest::Proxy::custom(move |url| {
            self.target(url).map(str::to_string)
        }))
    }
}

/// The agent's proxies, read from its environment once.
pub(crate) fn proxies() -> &'static Proxies {
    static PROXIES: OnceLock<Proxies> = OnceLock::new();
    PROXIES.get_or_init(|| Proxies::from_vars(|name| std::env::var(name).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Proxies::from_vars(|name| vars.get(name).cloned())
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn variables_are_read_as_curl_reads_them() {
        let p = proxies(&[
            ("HTTPS_PROXY", "http://upper:8080"),
            ("https_proxy", "http://user:pw@lower:3128"),
            ("HTTP_PROXY", "http://cgi-set:80"),
        ]);
        // The lower-case form wins; its credentials are used, not shown.
        assert_eq!(
            p.target(&url("https://idp.example/token")),
            Some("http://user:pw@lower:3128")
        );
        assert_eq!(
            p.describe(&url("https://idp.example/token")).unwrap(),
            "http://lower:3128 (from https_proxy)"
        );
        // Plain http goes direct, whatever the variables say.
        assert_eq!(p.target(&url("http://idp.example/token")), None);
        let p = proxies(&[
            ("http_proxy", "http://plain:80"),
            ("all_proxy", "http://all:80"),
        ]);
        assert_eq!(p.target(&url("http://127.0.0.1:8080/token")), None);
        assert_eq!(p.target(&url("http://idp.example/")), None);
        assert_eq!(
            p.target(&url("https://idp.example/")),
            Some("http://all:80")
        );
    }

    #[test]
    fn all_proxy_is_the_fallback_and_no_proxy_exempts_hosts() {
        let p = proxies(&[
            ("ALL_PROXY", "http://all:1080"),
            ("no_proxy", "internal.example, 10.0.0.0/8,.corp"),
        ]);
        assert_eq!(
            p.target(&url("https://idp.example/")),
            Some("http://all:1080")
        );
        for direct in [
            "https://internal.example/token",
            "https://sso.internal.example/token",
            "https://10.1.2.3/token",
            "https://login.corp/token",
        ] {
            assert_eq!(p.target(&url(direct)), None, "{direct}");
        }
        // The lower-case no_proxy wins over NO_PROXY, as curl reads them.
        let p = proxies(&[
            ("https_proxy", "http://p:1"),
            ("no_proxy", "lower.example"),
            ("NO_PROXY", "upper.example"),
        ]);
        assert_eq!(p.target(&url("https://lower.example/token")), None);
        assert_eq!(
            p.target(&url("https://upper.example/token")),
            Some("http://p:1")
        );
        let p = proxies(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(p.target(&url("https://idp.example/")), None);
        assert!(proxies(&[]).target(&url("https://idp.example/")).is_none());
    }
}
