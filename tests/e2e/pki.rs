//! The test run's own certificate authority, made once per test process: the
//! authorization servers in the tests are reached over HTTPS with certificates
//! it issues, and agents trust it through `SSL_CERT_FILE` (the platform trust
//! store on Linux) or a profile's `--ca-file`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    date_time_ymd,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The CA's name, as a TLS error should show it.
pub const CA_NAME: &str = "jwtagent test CA";

/// A certificate and its private key, as PEM files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// Valid for 127.0.0.1 and localhost.
    pub server: Leaf,
    /// Valid for 127.0.0.1, but expired in 2021.
    pub expired: Leaf,
    /// Valid, but for idp.invalid only.
    pub wrong_name: Leaf,
    /// Valid for 127.0.0.1, issued by a CA nothing trusts.
    pub unknown_ca: Leaf,
    /// A client certificate from the test CA, subject `CN=pki-client`.
    pub client: Leaf,
    /// A self-signed client certificate, subject `CN=self-client`.
    pub self_signed_client: Leaf,
}

/// The test CA and its certificates, in a directory of this process's own
/// under the target directory.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_dead_runs(base);
        let dir = base.join(format!("pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        make(&dir)
    })
}

fn make(dir: &Path) -> Pki {
    let (ca_pem, ca) = authority(CA_NAME);
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_pem).unwrap();
    let (_, stranger) = authority("a CA nobody trusts");
    let loopback = ["127.0.0.1".to_string(), "localhost".to_string()];
    Pki {
        ca: ca_path,
        server: leaf(dir, "server", &ca, &loopback, 2099),
        expired: leaf(dir, "expired", &ca, &loopback, 2021),
        wrong_name: leaf(dir, "wrong-name", &ca, &["idp.invalid".to_string()], 2099),
        unknown_ca: leaf(dir, "unknown-ca", &stranger, &loopback, 2099),
        client: leaf(dir, "client", &ca, &["pki-client".to_string()], 2099),
        self_signed_client: self_signed(dir, "self-client"),
    }
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2099, 1, 1);
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    ca: &Issuer<'static, KeyPair>,
    names: &[String],
    until: i32,
) -> Leaf {
    let params = params(&names[0], names, until);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    write(dir, name, &cert.pem(), &key)
}

/// A self-signed certificate for subject CN=`name`.
fn self_signed(dir: &Path, name: &str) -> Leaf {
    let params = params(name, &[name.to_string()], 2099);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    write(dir, name, &cert.pem(), &key)
}

/// A certificate for CN=`cn` and `names`, valid from 2020 to `until`.
fn params(cn: &str, names: &[String], until: i32) -> CertificateParams {
    let mut params = CertificateParams::new(names.to_vec()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(until, 1, 1);
    params
}

fn write(dir: &Path, name: &str, cert: &str, key: &KeyPair) -> Leaf {
    let leaf = Leaf {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&leaf.cert, cert).unwrap();
    std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
    leaf
}

/// Earlier runs' directories, once their process is gone.
fn remove_dead_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pki-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
