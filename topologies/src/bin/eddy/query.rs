//! `eddy query`: runs one SQL query on a running Eddy's HTTP endpoint and prints the rows as a
//! table (or as the endpoint's JSON).

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Posts `sql` to `url` (`http://host:port`, the line `eddy demo` / `eddy run` print), with
/// the endpoint's bearer `token` if given, and prints the answer in `format` (`table` or
/// `json`).
pub fn run(url: &str, sql: &str, format: &str, token: Option<&str>) -> Result<()> {
    if !matches!(format, "table" | "json") {
        bail!("--format must be table or json, got `{format}`");
    }
    let endpoint = format!("{}/query", url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        let mut post = reqwest::Client::new().post(&endpoint);
        if let Some(token) = token {
            post = post.bearer_auth(token);
        }
        let response = post
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&serde_json::json!({ "sql": sql }))?)
            .send()
            .await
            .with_context(|| format!("reaching {endpoint} (is `eddy demo` or `eddy run` up?)"))?;
        let status = response.status();
        anyhow::Ok((status, response.bytes().await?))
    })?;
    let answer: Value = serde_json::from_slice(&body)
        .with_context(|| format!("{endpoint} answered {status} with no JSON"))?;
    if !status.is_success() {
        let message = answer["error"].as_str().unwrap_or("no reason given");
        bail!("the query failed: {message}");
    }
    if format == "json" {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let rows = answer.as_array().map(Vec::as_slice).unwrap_or_default();
    print!("{}", table(rows));
    Ok(())
}

/// Rows of JSON objects as an aligned text table, columns in the first row's order.
fn table(rows: &[Value]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        for name in row.as_object().into_iter().flat_map(|o| o.keys()) {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    let cell = |row: &Value, column: &str| match row.get(column) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(columns.clone());
    out.push_str(&format!(
        "{}\n",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for row in rows {
        out.push_str(&line(columns.iter().map(|c| cell(row, c)).collect()));
    }
    out.push_str(&format!(
        "({} row{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_print_as_an_aligned_table() {
        let rows: Vec<Value> = serde_json::from_str(
            r#"[{"key": "quiz-1", "attempts": 12}, {"key": "q2", "attempts": 3, "best": null}]"#,
        )
        .unwrap();
        assert_eq!(
            table(&rows),
            "key    | attempts | best\n-------+----------+-----\nquiz-1 | 12       |\nq2     | 3        |\n(2 rows)\n"
        );
        assert_eq!(table(&[]), "\n\n(0 rows)\n");
    }
}
