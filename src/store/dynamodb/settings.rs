//! The DynamoDB store's settings: `dynamodb://TABLE`. Credentials, region
//! and endpoint are not here: the AWS SDK reads them (`AWS_*` variables,
//! profiles, instance and container roles) when the store opens, as the AWS
//! CLI does.

use std::fmt;

use anyhow::{bail, Result};

use crate::config::{Connection, Shared};

/// How to reach DynamoDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoTarget {
    /// The table's name.
    pub table: String,
    /// Connect and per-attempt answer timeout; the reconnects are the SDK's
    /// retries (the backoff is the first retry's pause, doubled for each
    /// further one).
    pub connection: Connection,
}

impl fmt::Display for DynamoTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dynamodb table {}", self.table)
    }
}

/// `dynamodb://TABLE`: a table name as DynamoDB accepts it (3-255 of
/// `A-Z a-z 0-9 _ - .`), nothing else; the region and endpoint are AWS
/// settings (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`), not part of the URL.
pub fn parse(table: &str, shared: &mut Shared) -> Result<DynamoTarget> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        bail!(
            "CRONLOCK_URL: {table:?} is not a DynamoDB table name (3-255 of A-Z, a-z, 0-9, '_', '-', '.'); \
             expected dynamodb://TABLE, with the region and endpoint in AWS_REGION and AWS_ENDPOINT_URL"
        );
    }
    Ok(DynamoTarget {
        table: table.to_string(),
        connection: shared.connection,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::load_env;
    use crate::store::Store;

    #[test]
    fn the_general_timeout_and_reconnects_are_the_sdk_retries() {
        let table = load_env(&[
            ("CRONLOCK_URL", "dynamodb://locks"),
            ("CRONLOCK_RECONNECT_ATTEMPTS", "2"),
        ])
        .unwrap();
        assert_eq!(
            table.store,
            Store::DynamoDb(Box::new(DynamoTarget {
                table: "locks".into(),
                connection: Connection {
                    timeout: Some(Duration::from_secs(30)),
                    reconnect_attempts: 2,
                    reconnect_backoff: 5,
                },
            }))
        );
    }

    #[test]
    fn a_table_name_only() {
        let config = load_env(&[("CRONLOCK_URL", "dynamodb://cron-locks.prod")]).unwrap();
        let Store::DynamoDb(target) = config.store else {
            panic!("{:?}", config.store)
        };
        assert_eq!(target.table, "cron-locks.prod");
        for bad in ["dynamodb://ab", "dynamodb://a/b", "dynamodb://us-east-1/t"] {
            assert!(load_env(&[("CRONLOCK_URL", bad)]).is_err(), "{bad}");
        }
    }
}
