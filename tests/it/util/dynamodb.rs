//! A private DynamoDB emulator for tests: moto's server, from the virtualenv
//! scripts/test.sh makes (target/moto-venv), on a free loopback port, with a
//! fresh lock table, killed when dropped. Nothing here reaches AWS: the
//! environment it gives cronlock has fake keys, no profile files and no
//! instance metadata.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, log_tail, wait_until, TempDir};

/// The table every fixture creates, keyed as lock-exec's: `key` (S).
pub const TABLE: &str = "locks";
/// A fake secret key: it must never appear in cronlock's output.
pub const SECRET: &str = "fake-secret-4d9b1c";

/// The virtualenv that holds moto: `CRONLOCK_TEST_MOTO_VENV`, else
/// target/moto-venv in the repository.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("CRONLOCK_TEST_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/moto-venv")));
    if !venv.join("bin/moto_server").is_file() {
        panic!(
            "no moto server in {}: run scripts/test.sh once (it makes that virtualenv), \
             or point CRONLOCK_TEST_MOTO_VENV at one with moto[server] installed",
            venv.display()
        );
    }
    venv
}

/// A moto server of our own.
pub struct DynamoServer {
    pub port: u16,
    pub dir: TempDir,
    process: Option<Child>,
}

impl DynamoServer {
    /// A fresh server on a free port, with the table [`TABLE`].
    pub fn start() -> DynamoServer {
        let venv = venv();
        let dir = TempDir::new("moto");
        let port = free_port();
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        // One request at a time: moto's threaded server checks a PutItem's
        // condition and writes the item in two steps that concurrent
        // requests can interleave, so two of ten contenders could both win
        // a takeover there; DynamoDB itself applies a conditional write
        // atomically.
        let serve = "import sys, moto.server as s\n\
            run = s.run_simple\n\
            s.run_simple = lambda *a, **k: run(*a, **dict(k, threaded=False))\n\
            s.main(sys.argv[1:])\n";
        let process = Command::new(venv.join("bin/python"))
            .args(["-c", serve, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let server = DynamoServer {
            port,
            dir,
            process: Some(process),
        };
        wait_until(Duration::from_secs(30), "moto_server to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server.create_table(TABLE);
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS settings of a host that talks to this server only.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        aws_env(&self.endpoint())
    }

    /// Environment that points cronlock at this server's table.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.aws_env();
        env.push(("CRONLOCK_URL".into(), format!("dynamodb://{TABLE}")));
        env
    }

    /// Runs a Python snippet with boto3 against this server (`db` is a
    /// DynamoDB client); its output.
    pub fn python(&self, script: &str) -> Output {
        let code = format!("import boto3, botocore, sys, time\ndb = boto3.client('dynamodb')\n{script}\n");
        let mut command = Command::new(venv().join("bin/python"));
        command.args(["-c", &code]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                command.env_remove(&name);
            }
        }
        // botocore reads the region from AWS_DEFAULT_REGION only.
        command
            .envs(self.aws_env())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("run the venv's python")
    }

    /// Like [`python`] but panics unless it succeeds; its stdout, trimmed.
    pub fn python_ok(&self, script: &str) -> String {
        let output = self.python(script);
        assert!(
            output.status.success(),
            "python failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            log_tail(&self.dir.join("moto.log"))
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// A table keyed by `key` (S), as lock-exec's README makes it.
    pub fn create_table(&self, name: &str) {
        self.python_ok(&format!(
            "db.create_table(TableName='{name}', BillingMode='PAY_PER_REQUEST', \
             AttributeDefinitions=[{{'AttributeName': 'key', 'AttributeType': 'S'}}], \
             KeySchema=[{{'AttributeName': 'key', 'KeyType': 'HASH'}}])"
        ));
    }

    /// lock-exec's own take: its conditional PutItem of `key` for `seconds`
    /// seconds. True if it took the lock, false on ConditionalCheckFailed.
    pub fn lock_exec_take(&self, key: &str, seconds: i64) -> bool {
        let out = self.python_ok(&format!(
            "now = time.time_ns()\n\
             try:\n    db.put_item(TableName='{TABLE}', \
             Item={{'key': {{'S': {key:?}}}, 'expire': {{'N': str(now + {seconds} * 10**9)}}}}, \
             ConditionExpression='attribute_not_exists(#key) OR expire < :now', \
             ExpressionAttributeNames={{'#key': 'key'}}, \
             ExpressionAttributeValues={{':now': {{'N': str(now)}}}})\n    print('taken')\n\
             except db.exceptions.ConditionalCheckFailedException:\n    print('locked')"
        ));
        match out.as_str() {
            "taken" => true,
            "locked" => false,
            other => panic!("lock-exec's put said {other:?}"),
        }
    }

    /// The item of `key` as Python prints its attributes, or "None".
    pub fn item(&self, key: &str) -> String {
        self.python_ok(&format!(
            "item = db.get_item(TableName='{TABLE}', Key={{'key': {{'S': {key:?}}}}}, ConsistentRead=True).get('Item')\n\
             print(sorted((k, list(v.items())[0]) for k, v in item.items()) if item else None)"
        ))
    }

    /// Stops the server now (for fault tests).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for DynamoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The AWS settings of a host whose only AWS is `endpoint`: fake keys, a
/// region, no config or credentials files, no instance metadata.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAFAKEFORTESTS"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}
