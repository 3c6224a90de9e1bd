//! `edgepipe`: one binary that inspects change logs offline (`edgepipe wal`)
//! and, as later issues land, runs a node and talks to one.
//!
//! # Exit codes
//! - 0: success.
//! - 1: the command ran and found a problem (`wal verify` on a damaged log,
//!   `tsfile dump` on a damaged file, `store verify` on a damaged data
//!   directory).
//! - 2: the command could not run (bad arguments, unreadable directory).
#![deny(missing_docs)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod cli;
mod demo;
pub mod malloc;
pub mod server;
mod storecmd;
mod table;
mod time;
mod top;
mod tsfilecmd;
mod walcmd;

/// edgepipe: Apache IoTDB data sync as a log-structured replicator.
#[derive(Debug, Parser)]
#[command(name = "edgepipe", version, about, long_about = None)]
pub struct Opt {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Inspect a change log directory (read-only: safe beside a running
    /// node).
    Wal {
        /// The inspection to run.
        #[command(subcommand)]
        cmd: walcmd::WalCmd,
    },
    /// Inspect a TsFile (IoTDB 1.x or Apache TsFile 2.x) with the reader the
    /// receiver loads files with (read-only).
    Tsfile {
        /// The inspection to run.
        #[command(subcommand)]
        cmd: tsfilecmd::TsFileCmd,
    },
    /// Check a node's data directory offline (read-only: safe beside a
    /// running node).
    Store {
        /// The check to run.
        #[command(subcommand)]
        cmd: storecmd::StoreCmd,
    },
    /// Run a node: the IoTDB client RPC on rpc_port (default 6667), the
    /// change log and the store under the data directory. Writes.
    Server(server::ServerOpt),
    /// Connect to a node: an interactive SQL shell, or `-e` for statements.
    #[command(disable_help_flag = true)]
    Cli(cli::CliOpt),
    /// Start an edge and a cloud node on free local ports, pipe a larger
    /// stream (as history) and the example of IoTDB's data sync guide from
    /// edge to cloud, and show both ends side by side. Exit code 1 if they
    /// differ.
    Demo(demo::DemoOpt),
    /// A live view of a node: each pipe's state, rate, lag, backlog and
    /// last error, and the change log's size and ingest rate. Refreshes in
    /// place on a terminal; prints one snapshot otherwise. Read-only.
    #[command(disable_help_flag = true)]
    Top(top::TopOpt),
}

/// What a command reports besides its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All good.
    Ok,
    /// The command ran and found a problem (exit code 1).
    ProblemFound,
}

/// Runs a parsed command, writing its output to `out`.
///
/// # Errors
/// Whatever stopped the command from running.
pub fn execute(opt: Opt, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    match opt.cmd {
        Cmd::Wal { cmd } => walcmd::execute(cmd, out),
        Cmd::Tsfile { cmd } => tsfilecmd::execute(cmd, out),
        Cmd::Store { cmd } => storecmd::execute(cmd, out),
        Cmd::Server(o) => server::run(o).map(|_| Outcome::Ok),
        Cmd::Cli(o) => cli::run(o, out),
        Cmd::Demo(o) => demo::run(o, out),
        Cmd::Top(o) => top::run(o, out),
    }
}

/// The binary's entry point: parse, run, print the error chain once, map to
/// an exit code.
pub fn main() -> ExitCode {
    let opt = Opt::parse_from(cli::fix_args(std::env::args().collect()));
    let default_level = if matches!(opt.cmd, Cmd::Server(_)) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = execute(opt, &mut out).and_then(|o| {
        out.flush()?;
        Ok(o)
    });
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::ProblemFound) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            drop(out);
            eprintln!("edgepipe: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
