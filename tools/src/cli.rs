//! `edgepipe cli`: an interactive shell (line editing, history) or one
//! statement with `-e`, rendering results as IoTDB's CLI does.

use std::io::Write;
use std::time::Instant;

use clap::Args;
use node::client::{ClientError, Rows, Session};
use protocol::types::Value;

/// Options of `edgepipe cli` (IoTDB's CLI flags; `-pw` works as in IoTDB).
#[derive(Debug, Args)]
pub struct CliOpt {
    /// Host of the node.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Client RPC port.
    #[arg(short = 'p', long = "port", default_value_t = 6667)]
    pub port: u16,
    /// User name.
    #[arg(short = 'u', long = "user", default_value = "root")]
    pub user: String,
    /// Password (`-pw` as in IoTDB's CLI).
    #[arg(long = "pw", visible_alias = "password", default_value = "root")]
    pub password: String,
    /// Run these statements (separated by `;`) and exit.
    #[arg(short = 'e', long = "execute")]
    pub execute: Option<String>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Rewrites IoTDB's `-pw` (a two-letter short flag clap cannot express)
/// into `--pw`.
pub fn fix_args(args: Vec<String>) -> Vec<String> {
    args.into_iter()
        .map(|a| if a == "-pw" { "--pw".to_string() } else { a })
        .collect()
}

fn render_value(v: &Option<Value>) -> String {
    match v {
        None => "null".into(),
        Some(v) => v.to_string(),
    }
}

fn precision(p: &str) -> node::exec::Precision {
    node::exec::Precision::parse(p).unwrap_or_default()
}

/// Renders rows as IoTDB's CLI: a bordered table, `Time` first unless the
/// result has no times.
pub fn render(rows: &Rows, p: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let zone = *chrono::Local::now().offset();
    let prec = precision(p);
    let mut header: Vec<String> = Vec::new();
    if !rows.ignore_timestamp {
        header.push("Time".into());
    }
    header.extend(rows.columns.iter().cloned());
    let body: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|(t, vals)| {
            let mut r = Vec::with_capacity(header.len());
            if !rows.ignore_timestamp {
                r.push(prec.format(*t, zone));
            }
            r.extend(vals.iter().map(render_value));
            r
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .fold("+".to_string(), |s, w| s + &"-".repeat(*w) + "+");
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .fold("|".to_string(), |s, (c, w)| s + &format!("{c:>w$}|"))
    };
    writeln!(out, "{rule}")?;
    writeln!(out, "{}", line(&header))?;
    writeln!(out, "{rule}")?;
    for r in &body {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(out, "{rule}")?;
    writeln!(out, "Total line number = {}", body.len())
}

/// Splits a script into statements at `;` outside quotes.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (None, '\'' | '"' | '`') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, ';') => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Runs one statement and prints what IoTDB's CLI prints. Returns false if
/// it failed.
fn run_one(s: &mut Session, sql: &str, out: &mut dyn Write) -> std::io::Result<bool> {
    let start = Instant::now();
    match s.execute(sql) {
        Ok(Some(rows)) => {
            render(&rows, &s.precision, out)?;
            writeln!(out, "It costs {:.3}s", start.elapsed().as_secs_f64())?;
            Ok(true)
        }
        Ok(None) => {
            writeln!(out, "Msg: The statement is executed successfully.")?;
            Ok(true)
        }
        Err(e @ ClientError::Status { .. }) => {
            writeln!(out, "Msg: {e}")?;
            Ok(false)
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Runs the CLI.
///
/// # Errors
/// Connection failures, or (with `-e`) a statement that failed.
pub fn run(opt: CliOpt, out: &mut dyn Write) -> anyhow::Result<crate::Outcome> {
    let addr = format!("{}:{}", opt.host, opt.port);
    let mut s =
        Session::open(&addr, &opt.user, &opt.password).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(script) = opt.execute {
        let mut ok = true;
        for st in split_statements(&script) {
            ok &= run_one(&mut s, &st, out)?;
        }
        let _ = s.close();
        return Ok(if ok {
            crate::Outcome::Ok
        } else {
            crate::Outcome::ProblemFound
        });
    }
    let mut rl = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".edgepipe_history"));
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    writeln!(
        out,
        "edgepipe cli connected to {addr} (type quit or exit to leave)"
    )?;
    out.flush()?;
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "IoTDB> "
        } else {
            "    -> "
        };
        let line = match rl.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let t = line.trim();
        if pending.is_empty() && (t.eq_ignore_ascii_case("quit") || t.eq_ignore_ascii_case("exit"))
        {
            break;
        }
        if t.is_empty() {
            continue;
        }
        pending.push_str(&line);
        pending.push(' ');
        // A statement ends with `;` or is a single line without one.
        let stmts = split_statements(&pending);
        let _ = rl.add_history_entry(pending.trim());
        for st in stmts {
            run_one(&mut s, &st, out)?;
        }
        out.flush()?;
        pending.clear();
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    let _ = s.close();
    Ok(crate::Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes() {
        assert_eq!(
            split_statements("a; b 'x;y';; c"),
            vec!["a", "b 'x;y'", "c"]
        );
        assert_eq!(
            fix_args(vec!["-pw".into(), "root".into()]),
            vec!["--pw", "root"]
        );
    }

    #[test]
    fn renders_like_iotdb() {
        let rows = Rows {
            columns: vec!["root.sg.d.s".into()],
            types: vec!["INT32".into()],
            ignore_timestamp: true,
            rows: vec![(0, vec![Some(Value::Int32(10))]), (0, vec![None])],
        };
        let mut out = Vec::new();
        render(&rows, "ms", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+-----------+\n|root.sg.d.s|\n+-----------+\n|         10|\n|       null|\n+-----------+\nTotal line number = 2\n"
        );
    }
}
