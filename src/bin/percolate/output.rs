//! Printing results: JSON documents, plain tables (control characters escaped), progress
//! bars on a terminal. Owns stdout formatting; runs no command.

#[allow(unused_imports)]
use super::*;

/// Prints `value` as one line of JSON.
pub(crate) fn print_json(value: &impl Serialize) -> percolate::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(|e| bad("output", e))?;
    writeln!(out).map_err(output_error)
}

/// Prints rows under headers, columns padded, long cells cut.
/// `text` on one line with every control character escaped (`\n`, `\t`, `\u{1b}`, ...):
/// stored text must never reach a terminal as escape sequences that move the cursor,
/// rewrite what was printed, or set the window title.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) -> percolate::Result<()> {
    const MAX_CELL: usize = 60;
    let cut = |cell: &str| -> String {
        let flat = printable(cell);
        if flat.chars().count() > MAX_CELL {
            let mut short: String = flat.chars().take(MAX_CELL - 1).collect();
            short.push('…');
            short
        } else {
            flat
        }
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}", width = *width))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied())).map_err(output_error)?;
    for row in &rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str))).map_err(output_error)?;
    }
    Ok(())
}

pub(crate) fn record_headers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Resource => &["id", "uri", "content", "metadata", "dimension", "updated_at"],
        Kind::Entity => &["id", "name", "kind", "properties", "updated_at"],
        Kind::Edge => &["id", "from", "to", "relation", "weight", "properties"],
        Kind::Moment => &["id", "start", "end", "kind", "content", "entities"],
    }
}

pub(crate) fn record_row(record: &Record) -> Vec<String> {
    let json = |map: &percolate::Metadata| Value::Object(map.clone()).to_string();
    match record {
        Record::Resource(r) => vec![
            r.id.to_string(),
            r.uri.clone().unwrap_or_default(),
            r.content.clone(),
            json(&r.metadata),
            r.embedding.as_ref().map(|e| e.len().to_string()).unwrap_or_default(),
            r.updated_at.to_string(),
        ],
        Record::Entity(e) => vec![
            e.id.to_string(),
            e.name.clone(),
            e.kind.clone(),
            json(&e.properties),
            e.updated_at.to_string(),
        ],
        Record::Edge(e) => vec![
            e.id.to_string(),
            e.from.to_string(),
            e.to.to_string(),
            e.relation.clone(),
            e.weight.to_string(),
            json(&e.properties),
        ],
        Record::Moment(m) => vec![
            m.id.to_string(),
            m.start.to_string(),
            m.end.to_string(),
            m.kind.clone(),
            m.content.clone(),
            m.entities.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        ],
    }
}

/// Prints records: one object (or an array when `many`) in JSON, or a table.
pub(crate) fn print_records(
    kind: Kind,
    records: &[Record],
    many: bool,
    output: Output,
) -> percolate::Result<()> {
    match output {
        Output::Json if many => print_json(&records.iter().map(Plain).collect::<Vec<_>>()),
        Output::Json => match records.first() {
            Some(record) => print_json(&Plain(record)),
            None => print_json(&Value::Null),
        },
        Output::Table => {
            print_table(record_headers(kind), &records.iter().map(record_row).collect::<Vec<_>>())
        }
    }
}

/// A record's own JSON, without the `type` tag the portable format adds; fields in
/// declaration order, as in exports.
pub(crate) struct Plain<'a>(&'a Record);

impl Serialize for Plain<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Record::Resource(r) => r.serialize(s),
            Record::Entity(e) => e.serialize(s),
            Record::Edge(e) => e.serialize(s),
            Record::Moment(m) => m.serialize(s),
        }
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
pub(crate) fn progress_bar(message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>9} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

pub(crate) fn on_progress(bar: &ProgressBar) -> impl FnMut(Progress) + '_ {
    move |p: Progress| {
        // While an export scans, the total is not known yet (0): the bar tracks what is done.
        bar.set_length(p.total.max(p.done));
        bar.set_position(p.done);
    }
}

/// Prints a JSON object, or its top-level fields as a two-column table.
pub(crate) fn print_summary(summary: &Value, output: Output) -> percolate::Result<()> {
    match output {
        Output::Json => print_json(summary),
        Output::Table => {
            let rows: Vec<Vec<String>> = summary
                .as_object()
                .map(|map| {
                    map.iter()
                        .map(|(key, value)| {
                            let text = match value {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            vec![key.clone(), text]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["field", "value"], &rows)
        }
    }
}
