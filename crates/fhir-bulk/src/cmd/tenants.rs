//! `fhir-bulk tenants add|list|remove`: the tenants of a store, served at `/{tenant}/fhir`
//! by `serve --tenants`. The id rules are `fhir_bulk_server::tenant::validate_id`; the
//! default tenant (the plain `/fhir` base) always exists and cannot be removed.

use anyhow::bail;
use fhir_bulk_store::{NewTenant, Store, Tenant};
use std::sync::Arc;

/// Flags of `fhir-bulk tenants`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Add a tenant, optionally with limits.
    Add(AddArgs),
    /// List the tenants and their limits.
    List(Common),
    /// Remove a tenant with all its data, clients and jobs.
    Remove(IdArgs),
}

#[derive(clap::Args)]
struct Common {
    /// The database: a SQLite file path or a PostgreSQL URL.
    #[arg(long, env = "FHIR_BULK_DATABASE", default_value = "./fhir-bulk.db")]
    database: String,
}

#[derive(clap::Args)]
struct IdArgs {
    #[command(flatten)]
    common: Common,
    /// The tenant id: its FHIR base is /{id}/fhir.
    #[arg(long, env = "FHIR_BULK_ID")]
    id: String,
}

#[derive(clap::Args)]
struct AddArgs {
    #[command(flatten)]
    who: IdArgs,
    /// Running exports allowed at once in the tenant, across all nodes (429 beyond).
    #[arg(long, env = "FHIR_BULK_MAX_EXPORTS", value_name = "N")]
    max_exports: Option<u64>,
    /// Requests per second allowed to the tenant, per server process (429 beyond).
    #[arg(long, env = "FHIR_BULK_RATE_PER_SECOND", value_name = "R")]
    rate_per_second: Option<f64>,
}

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Add(a) => {
            let new = new_tenant(&a)?;
            let store = open(&a.who.common).await?;
            let t = store.create_tenant(new).await?;
            eprintln!(
                "added tenant '{}' ({}); its FHIR base is /{}/fhir under `serve --tenants`",
                t.id,
                limits(&t),
                t.id
            );
        }
        Action::List(common) => {
            let store = open(&common).await?;
            println!(
                "{:<24} {:<12} {:<14} BASE",
                "ID", "MAX-EXPORTS", "RATE-PER-SEC"
            );
            for t in store.tenants().await? {
                println!("{}", line(&t));
            }
        }
        Action::Remove(a) => {
            let store = open(&a.common).await?;
            if !store.delete_tenant(&a.id).await? {
                bail!("there is no tenant '{}' in {}", a.id, a.common.database);
            }
            eprintln!(
                "removed tenant '{}' with its resources, clients and jobs",
                a.id
            );
        }
    }
    Ok(())
}

/// Checks the flags of `add` (no I/O).
fn new_tenant(a: &AddArgs) -> anyhow::Result<NewTenant> {
    fhir_bulk_server::tenant::validate_id(&a.who.id).map_err(anyhow::Error::msg)?;
    if a.max_exports == Some(0) {
        bail!("--max-exports must be at least 1 (leave it out for no limit)");
    }
    if let Some(r) = a.rate_per_second
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate-per-second must be a positive number (leave it out for no limit)");
    }
    Ok(NewTenant {
        id: a.who.id.clone(),
        max_exports: a.max_exports,
        rate_per_second: a.rate_per_second,
    })
}

fn limits(t: &Tenant) -> String {
    let exports = t.max_exports.map_or("no export limit".into(), |n| {
        format!("at most {n} running exports")
    });
    let rate = t.rate_per_second.map_or("no rate limit".into(), |r| {
        format!("{r} requests/s per node")
    });
    format!("{exports}, {rate}")
}

fn line(t: &Tenant) -> String {
    let base = if t.id == fhir_bulk_store::DEFAULT_TENANT {
        "/fhir".to_string()
    } else {
        format!("/{}/fhir", t.id)
    };
    format!(
        "{:<24} {:<12} {:<14} {base}",
        t.id,
        t.max_exports.map_or("-".into(), |n| n.to_string()),
        t.rate_per_second.map_or("-".into(), |r| r.to_string()),
    )
}

async fn open(common: &Common) -> anyhow::Result<Arc<dyn Store>> {
    super::open_store(&common.database).await
}

/// `--tenant` of `load` and `clients`: it must exist in the store (the default tenant
/// always does), so a typo never creates data nobody can reach.
pub async fn require(store: &dyn Store, tenant: &str, database: &str) -> anyhow::Result<()> {
    if store.tenant(tenant).await?.is_none() {
        bail!(
            "there is no tenant '{tenant}' in {database}; add it first with `fhir-bulk tenants add --id {tenant}`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(args: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("tenants").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    #[tokio::test]
    async fn add_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite");
        let db = db.to_str().unwrap();
        run(parse(&[
            "add",
            "--database",
            db,
            "--id",
            "acme",
            "--max-exports",
            "2",
            "--rate-per-second",
            "7.5",
        ]))
        .await
        .unwrap();
        // Twice is an error, and so are bad ids and limits.
        for bad in [
            &["add", "--database", db, "--id", "acme"][..],
            &["add", "--database", db, "--id", "a/b"],
            &["add", "--database", db, "--id", "fhir"],
            &["add", "--database", db, "--id", "x", "--max-exports", "0"],
            &["add", "--database", db, "--id", "x", "--rate-per-second=-1"],
            &[
                "add",
                "--database",
                db,
                "--id",
                "x",
                "--rate-per-second",
                "0",
            ],
            &["remove", "--database", db, "--id", "default"],
            &["remove", "--database", db, "--id", "nobody"],
        ] {
            assert!(run(parse(bad)).await.is_err(), "{bad:?}");
        }
        run(parse(&["list", "--database", db])).await.unwrap();

        let store = fhir_bulk_store::sqlite::SqliteStore::open(db)
            .await
            .unwrap();
        let t = store.tenant("acme").await.unwrap().unwrap();
        assert_eq!((t.max_exports, t.rate_per_second), (Some(2), Some(7.5)));
        assert_eq!(
            line(&t).split_whitespace().collect::<Vec<_>>(),
            ["acme", "2", "7.5", "/acme/fhir"]
        );
        assert!(require(&store, "acme", db).await.is_ok());
        assert!(require(&store, "default", db).await.is_ok());
        let e = require(&store, "acme2", db).await.unwrap_err().to_string();
        assert!(e.contains("tenants add --id acme2"), "{e}");

        run(parse(&["remove", "--database", db, "--id", "acme"]))
            .await
            .unwrap();
        assert!(store.tenant("acme").await.unwrap().is_none());
    }
}
