//! A throwaway certificate authority made at test time, for TLS servers.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use super::TempDir;

/// PEM files in a private directory: `ca.crt`, `other-ca.crt` (a CA that
/// signed nothing we use), and for each leaf NAME `NAME.crt` + `NAME.key`:
/// `server` (localhost and 127.0.0.1), `expired`, `wrong-name`
/// (only `elsewhere.test`), and `client` (for mutual TLS).
///
/// `server` may also act as a client: an etcd member that requires client
/// certificates connects its JSON gateway to its own gRPC port with it.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let (ca_params, ca_key) = ca("cronlock test CA");
        std::fs::write(dir.join("ca.crt"), ca_params.self_signed(&ca_key).unwrap().pem()).unwrap();
        let (other_params, other_key) = ca("some other CA");
        std::fs::write(
            dir.join("other-ca.crt"),
            other_params.self_signed(&other_key).unwrap().pem(),
        )
        .unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);

        let leaf = |name: &str, sans: &[&str], purposes: &[ExtendedKeyUsagePurpose], expired: bool| {
            let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            params.distinguished_name.push(DnType::CommonName, sans[0]);
            params.extended_key_usages = purposes.to_vec();
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(&format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.join(&format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf(
            "server",
            &["localhost", "127.0.0.1"],
            &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            false,
        );
        leaf(
            "expired",
            &["localhost", "127.0.0.1"],
            &[ExtendedKeyUsagePurpose::ServerAuth],
            true,
        );
        leaf(
            "wrong-name",
            &["elsewhere.test"],
            &[ExtendedKeyUsagePurpose::ServerAuth],
            false,
        );
        leaf(
            "client",
            &["cronlock client"],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            false,
        );
        Pki { dir }
    }

    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params, KeyPair::generate().unwrap())
}
