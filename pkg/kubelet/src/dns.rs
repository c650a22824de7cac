//! Per-pod `/etc/resolv.conf` (dnsPolicy, dnsConfig) and kubelet-managed `/etc/hosts`, written
//! under the pod dir and bind-mounted into every container of the pod.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use crate::runtime::Mount;

/// Upstream's limits on merged resolver settings.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH: usize = 32;

/// A resolver configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `name` or `name:value`.
    pub options: Vec<String>,
}

impl Resolv {
    /// Parses resolv.conf text (nameserver, search/domain, options).
    pub fn parse(text: &str) -> Self {
        let mut r = Resolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => r.searches = words.map(str::to_string).collect(),
                Some("options") => r.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        r
    }

    /// resolv.conf text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

fn push_unique(v: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !v.contains(&i) {
            v.push(i);
        }
    }
}

/// Sets `name[:value]` options, later ones overriding earlier ones of the same name.
fn merge_options(v: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        let name = i.split(':').next().unwrap_or_default().to_string();
        v.retain(|o| o.split(':').next() != Some(name.as_str()));
        v.push(i);
    }
}

/// The effective policy after upstream's host-network and missing-cluster-DNS fallbacks.
pub(crate) fn effective_policy(pod: &Pod, cluster_dns: &[String]) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_net = spec.host_network.unwrap_or(false);
    match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => "None",
        "Default" => "Default",
        "ClusterFirstWithHostNet" if !cluster_dns.is_empty() => "ClusterFirst",
        "ClusterFirst" if !host_net && !cluster_dns.is_empty() => "ClusterFirst",
        _ => "Default",
    }
}

/// The pod's resolver config from its policy, the kubelet's settings and dnsConfig.
pub(crate) fn resolv(pod: &Pod, cluster_dns: &[String], domain: &str, host: &Resolv) -> Resolv {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut r = match effective_policy(pod, cluster_dns) {
        "None" => Resolv::default(),
        "ClusterFirst" => {
            let mut searches = vec![
                format!("{ns}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ];
            push_unique(&mut searches, host.searches.clone());
            Resolv {
                nameservers: cluster_dns.to_vec(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => host.clone(),
    };
    if let Some(c) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        push_unique(
            &mut r.nameservers,
            c.nameservers.clone().unwrap_or_default(),
        );
        push_unique(&mut r.searches, c.searches.clone().unwrap_or_default());
        let opts = c.options.iter().flatten().map(|o| match &o.value {
            Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
            None => o.name.clone().unwrap_or_default(),
        });
        merge_options(&mut r.options, opts);
    }
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCH);
    r
}

/// The pod's hostname: spec.hostname, else its name (at most 63 characters).
pub(crate) fn hostname(pod: &Pod) -> String {
    let h = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// The kubelet-managed hosts file, after upstream's layout.
pub(crate) fn hosts(pod: &Pod, pod_ip: &str, domain: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let host = hostname(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            s.push_str(&format!(
                "{pod_ip}\t{host}.{sub}.{ns}.svc.{domain}\t{host}\n"
            ));
        }
        None => s.push_str(&format!("{pod_ip}\t{host}\n")),
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            s.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    s
}

/// Writes the pod's resolv.conf and hosts and returns the mounts every container gets.
/// hostNetwork pods keep the host's /etc/hosts, as upstream.
pub(crate) fn setup(k: &crate::Kubelet, pod: &Pod, pod_ip: &str) -> Result<Vec<Mount>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = crate::volumes::pod_dir(&k.config.root_dir, &uid);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let host = Resolv::parse(&std::fs::read_to_string(&k.config.resolv_conf).unwrap_or_default());
    let r = resolv(pod, &k.config.cluster_dns, &k.config.cluster_domain, &host);
    let mut mounts = vec![write(
        &dir.join("resolv.conf"),
        &r.render(),
        "/etc/resolv.conf",
    )?];
    let host_net = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if !host_net {
        let text = hosts(pod, pod_ip, &k.config.cluster_domain);
        mounts.push(write(&dir.join("etc-hosts"), &text, "/etc/hosts")?);
    }
    Ok(mounts)
}

fn write(path: &Path, text: &str, target: &str) -> Result<Mount, String> {
    // Rewriting in place (not rename) keeps the inode, so running containers see updates.
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Mount {
        source: path.to_string_lossy().into_owned(),
        target: target.into(),
        read_only: false,
        tmpfs_volume: false,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod"}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn cluster_first_searches_and_ndots() {
        let host = Resolv::parse("nameserver 1.1.1.1\nsearch corp.example\n");
        let p = pod(serde_json::json!({"containers": []}));
        let r = resolv(&p, &["10.96.0.10".into()], "cluster.local", &host);
        assert_eq!(
            r.render(),
            "nameserver 10.96.0.10\nsearch prod.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
        );
        // Without cluster DNS, ClusterFirst falls back to the host's config.
        assert_eq!(resolv(&p, &[], "cluster.local", &host), host);
    }

    #[test]
    fn host_network_none_and_dns_config() {
        let host = Resolv::parse("nameserver 1.1.1.1\n");
        let dns = vec!["10.96.0.10".to_string()];
        let hn = pod(serde_json::json!({"hostNetwork": true, "containers": []}));
        assert_eq!(resolv(&hn, &dns, "cluster.local", &host), host);
        let hn2 = pod(
            serde_json::json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "containers": []}),
        );
        assert_eq!(resolv(&hn2, &dns, "cluster.local", &host).nameservers, dns);
        let none = pod(
            serde_json::json!({"dnsPolicy": "None", "containers": [], "dnsConfig": {
                "nameservers": ["8.8.8.8"], "searches": ["a.b"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]
            }}),
        );
        assert_eq!(
            resolv(&none, &dns, "cluster.local", &host).render(),
            "nameserver 8.8.8.8\nsearch a.b\noptions ndots:2 edns0\n"
        );
        let merged = pod(
            serde_json::json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}),
        );
        assert_eq!(
            resolv(&merged, &dns, "cluster.local", &host).options,
            vec!["ndots:1"]
        );
    }

    #[test]
    fn hosts_file_has_pod_ip_and_fqdn() {
        let p = pod(
            serde_json::json!({"hostname": "h", "subdomain": "s", "containers": [],
            "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["foo", "bar"]}]}),
        );
        let h = hosts(&p, "10.0.0.5", "cluster.local");
        assert!(
            h.contains("10.0.0.5\th.s.prod.svc.cluster.local\th\n"),
            "{h}"
        );
        assert!(h.contains("1.2.3.4\tfoo\tbar\n"), "{h}");
    }
}
