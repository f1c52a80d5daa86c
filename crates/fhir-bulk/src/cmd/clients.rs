//! `fhir-bulk clients add|list|remove|rotate`: the SMART Backend Services clients of a store.
//!
//! The rules (ids, scopes, JWKS checks, secret generation and hashing) are
//! `fhir_bulk_server::auth::registry`, shared with the admin API; this module adds the flags
//! and the output. A generated client secret is printed once, alone on stdout (so
//! `SECRET=$(fhir-bulk clients add … --secret)` works); everything else goes to stderr.

use anyhow::Context;
use fhir_bulk_server::auth::registry::{self, CredentialInput, Registered, Registration};
use fhir_bulk_store::{Client, Credential, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Flags of `fhir-bulk clients`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Register a client with a public key set (--jwks FILE or --jwks-url URL) or a
    /// generated secret (--secret, printed once).
    Add(AddArgs),
    /// List the clients of a tenant.
    List(Common),
    /// Remove a client; its tokens stop working at once.
    Remove(IdArgs),
    /// Give a client a new secret, or replace its public key set.
    Rotate(RotateArgs),
}

#[derive(clap::Args)]
struct Common {
    /// The database: a SQLite file path or a PostgreSQL URL.
    #[arg(long, env = "FHIR_BULK_DATABASE", default_value = "./fhir-bulk.db")]
    database: String,
    /// The tenant (it must exist: `fhir-bulk tenants add`).
    #[arg(long, env = "FHIR_BULK_TENANT", default_value = fhir_bulk_store::DEFAULT_TENANT)]
    tenant: String,
}

#[derive(clap::Args)]
struct IdArgs {
    #[command(flatten)]
    common: Common,
    /// The client id.
    #[arg(long, env = "FHIR_BULK_ID")]
    id: String,
}

#[derive(clap::Args)]
#[group(id = "credential", multiple = false)]
struct CredentialArgs {
    /// A file with the client's public JWKS (e.g. jwks.json from `fhir-bulk keygen`).
    #[arg(long, env = "FHIR_BULK_JWKS", value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// The URL the client's public JWKS is served at (fetched and cached by the server).
    #[arg(long, env = "FHIR_BULK_JWKS_URL", value_name = "URL")]
    jwks_url: Option<String>,
    /// Generate a client secret (client_secret_basic/post), shown once.
    #[arg(long, env = "FHIR_BULK_SECRET")]
    secret: bool,
}

#[derive(clap::Args)]
struct AddArgs {
    #[command(flatten)]
    who: IdArgs,
    #[command(flatten)]
    credential: CredentialArgs,
    /// Scopes the client may be granted, space-separated (default system/*.rs).
    #[arg(long, env = "FHIR_BULK_SCOPE")]
    scope: Option<String>,
    /// A human name for listings (default: the id).
    #[arg(long, env = "FHIR_BULK_NAME")]
    name: Option<String>,
}

#[derive(clap::Args)]
struct RotateArgs {
    #[command(flatten)]
    who: IdArgs,
    /// The new credential; none gives a secret client a new secret.
    #[command(flatten)]
    credential: CredentialArgs,
}

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Add(a) => {
            let store = open(&a.who.common).await?;
            let credential = credential_input(&a.credential)?
                .context("give one of --jwks FILE, --jwks-url URL or --secret")?;
            let r = registry::register(
                store.as_ref(),
                Registration {
                    tenant: a.who.common.tenant.clone(),
                    id: a.who.id.clone(),
                    name: a.name,
                    scopes: a.scope,
                    credential,
                },
            )
            .await?;
            report("registered", &r);
        }
        Action::List(common) => {
            let store = open(&common).await?;
            let clients = store.clients(&common.tenant).await?;
            if clients.is_empty() {
                eprintln!(
                    "no clients in tenant '{}' of {}; register one with `fhir-bulk clients add`",
                    common.tenant, common.database
                );
            } else {
                println!(
                    "{:<24} {:<10} {:<24} {:<20} SCOPE",
                    "ID", "AUTH", "NAME", "UPDATED"
                );
                for c in &clients {
                    println!(
                        "{:<24} {:<10} {:<24} {:<20} {}",
                        c.id,
                        c.credential.kind(),
                        c.name,
                        c.updated_at.to_string().get(..19).unwrap_or_default(),
                        c.scopes
                    );
                }
            }
        }
        Action::Remove(a) => {
            let store = open(&a.common).await?;
            registry::remove(store.as_ref(), &a.common.tenant, &a.id).await?;
            eprintln!(
                "removed client '{}' from tenant '{}'",
                a.id, a.common.tenant
            );
        }
        Action::Rotate(a) => {
            let store = open(&a.who.common).await?;
            let input = credential_input(&a.credential)?;
            let r =
                registry::rotate(store.as_ref(), &a.who.common.tenant, &a.who.id, input).await?;
            report("rotated", &r);
        }
    }
    Ok(())
}

async fn open(common: &Common) -> anyhow::Result<Arc<dyn Store>> {
    let store = super::open_store(&common.database).await?;
    let database = fhir_bulk_store::open::redacted(&common.database);
    super::tenants::require(store.as_ref(), &common.tenant, &database).await?;
    Ok(store)
}

fn credential_input(c: &CredentialArgs) -> anyhow::Result<Option<CredentialInput>> {
    Ok(match (&c.jwks, &c.jwks_url, c.secret) {
        (Some(path), _, _) => Some(CredentialInput::Jwks(read_jwks(path)?)),
        (_, Some(url), _) => Some(CredentialInput::JwksUrl(url.clone())),
        (_, _, true) => Some(CredentialInput::Secret),
        _ => None,
    })
}

/// Reads a JWKS file; a lone JWK is accepted and wrapped as a set of one.
fn read_jwks(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a JSON JWKS (register the public jwks.json, not the private key)",
            path.display()
        )
    })?;
    Ok(if v.get("kty").is_some() {
        json!({ "keys": [v] })
    } else {
        v
    })
}

fn describe(c: &Client) -> String {
    match &c.credential {
        Credential::Jwks(_) => "private_key_jwt with the JWKS registered by value".into(),
        Credential::JwksUrl(u) => format!("private_key_jwt with the JWKS at {u}"),
        Credential::SecretHash(_) => {
            "client secret (client_secret_basic or client_secret_post)".into()
        }
    }
}

fn report(verb: &str, r: &Registered) {
    let c = &r.client;
    eprintln!(
        "{verb} client '{}' in tenant '{}': {}; scopes: {}",
        c.id,
        c.tenant,
        describe(c),
        c.scopes
    );
    if let Some(secret) = &r.secret {
        eprintln!("client secret (shown once: store it now; only its hash is kept):");
        println!("{}", secret.expose());
    }
}
