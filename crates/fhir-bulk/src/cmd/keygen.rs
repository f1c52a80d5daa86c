//! `fhir-bulk keygen`: a private key and the public JWKS a client registers (R1–R3).
//!
//! Writes `DIR/private-key.pem` (PKCS#8, mode 0600), `DIR/jwks.json` (public: `kty`, `kid`,
//! `alg`, `use: sig`, and `n`/`e` or `crv`/`x`/`y`) and, with `--private-jwks`,
//! `DIR/private.jwks.json` (0600). The `kid` defaults to the key's RFC 7638 thumbprint, which
//! is also what `fhir-bulk export --key private-key.pem` sends, so no `--kid` is needed there.

use anyhow::{Context, bail};
use fhir_bulk_client::key::{KeyAlg, generate};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Flags of `fhir-bulk keygen`.
#[derive(clap::Args)]
pub struct Args {
    /// Signing algorithm: ES384 (P-384) or RS384 (RSA 2048).
    #[arg(
        long,
        env = "FHIR_BULK_ALG",
        value_enum,
        default_value = "ES384",
        ignore_case = true
    )]
    alg: AlgArg,
    /// Directory to write the files into (created if missing).
    #[arg(long, env = "FHIR_BULK_OUT", value_name = "DIR")]
    out: PathBuf,
    /// Key id (default: the RFC 7638 thumbprint of the public key).
    #[arg(long, env = "FHIR_BULK_KID", value_name = "KID")]
    kid: Option<String>,
    /// Also write the private key as a JWKS (private.jwks.json).
    #[arg(long, env = "FHIR_BULK_PRIVATE_JWKS")]
    private_jwks: bool,
    /// Overwrite existing key files.
    #[arg(long, env = "FHIR_BULK_FORCE")]
    force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AlgArg {
    #[value(name = "ES384")]
    Es384,
    #[value(name = "RS384")]
    Rs384,
}

/// Writes `bytes` to a new file; `secret` files get mode 0600 from the start, so the key is
/// never readable by others, not even for a moment.
fn write_new(path: &Path, bytes: &[u8], secret: bool, force: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists; use --force to overwrite it", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    #[cfg(unix)]
    if secret {
        // An overwritten file keeps its old mode: tighten it.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let alg = match args.alg {
        AlgArg::Es384 => KeyAlg::Es384,
        AlgArg::Rs384 => KeyAlg::Rs384,
    };
    let private_pem = args.out.join("private-key.pem");
    if private_pem.exists() && !args.force {
        bail!(
            "{} exists; use --force to overwrite it",
            private_pem.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // RSA generation takes a moment of CPU: keep it off the async workers.
    let kid = args.kid.clone();
    let key = tokio::task::spawn_blocking(move || generate(alg, kid.as_deref()))
        .await?
        .map_err(|e| anyhow::anyhow!("key generation failed: {e}"))?;
    write_new(
        &private_pem,
        key.private_pem.expose().as_bytes(),
        true,
        args.force,
    )?;
    let jwks = args.out.join("jwks.json");
    write_new(
        &jwks,
        serde_json::to_string_pretty(&key.public_jwks)?.as_bytes(),
        false,
        args.force,
    )?;
    println!(
        "{}  private key (PKCS#8, keep it secret)",
        private_pem.display()
    );
    if args.private_jwks {
        let private_jwks = args.out.join("private.jwks.json");
        write_new(
            &private_jwks,
            key.private_jwks.expose().as_bytes(),
            true,
            args.force,
        )?;
        println!(
            "{}  private key as JWKS (keep it secret)",
            private_jwks.display()
        );
    }
    println!(
        "{}  public JWKS to register with the server",
        jwks.display()
    );
    println!("alg {}, kid {}", alg.as_str(), key.kid);
    Ok(())
}
