//! docker's `--format`: Go templates (the gtmpl-ng crate) with docker's own functions (`json`,
//! `split`, `join`, `title`, `lower`, `upper`, `pad`, `truncate`: docker/cli templates.go), the
//! `table` prefix (a header row, columns aligned as docker's tabwriter does: cli/table.rs)
//! and `json` (one JSON object a line).
use gtmpl_ng::{Context, FuncError, Template, Value};
use std::collections::HashMap;

/// A format the user gave, parsed once and rendered per row.
pub struct Format {
    rows: Template,
    header: Option<Template>,
}

/// Template errors, worded like docker's (`template parsing error: template: :1:2: ...`).
#[derive(Debug, thiserror::Error)]
#[error("template parsing error: {0}")]
pub struct FormatError(String);

impl Format {
    /// `table` alone means the command's default table: the caller substitutes it before.
    pub fn parse(source: &str) -> Result<Format, FormatError> {
        let table = source.starts_with("table");
        let text = template_text(source);
        let rows = parse_with(&text, DOCKER_FUNCS)?;
        let header = match table {
            true => Some(parse_with(&text, HEADER_FUNCS)?),
            false => None,
        };
        Ok(Format { rows, header })
    }

    /// One row: the template applied to `value`.
    pub fn render(&self, value: &Value, source: &str) -> Result<String, FormatError> {
        self.rows
            .render(&Context::from(value.clone()))
            .map_err(|e| FormatError(exec_message(&e, source)))
    }

    /// Renders every row, one a line; a table gets its header row (each field's column name
    /// from `headers`) and aligned columns, as docker's formatter does.
    pub fn render_all(
        &self,
        source: &str,
        rows: &[Value],
        headers: &[(&str, &str)],
    ) -> Result<String, FormatError> {
        let mut body = String::new();
        for r in rows {
            body.push_str(&self.render(r, source)?);
            body.push('\n');
        }
        let Some(header_tmpl) = &self.header else {
            return Ok(body);
        };
        let names: HashMap<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        // docker ignores a header that does not render (its error is dropped).
        let header = header_tmpl
            .render(&Context::from(Value::Map(names)))
            .unwrap_or_default();
        // Escaped before the layout (tabs and newlines stay), so that the widths are those of
        // what `outln!` then shows.
        let text = format!("{header}\n{body}");
        let text = hx_engine::sanitize::text(&text).to_cow();
        Ok(super::table::align(&text, super::table::DOCKER))
    }
}

/// docker's templateString: `json` is `{{json .}}`, a `table` prefix goes, spaces (not other
/// whitespace) around the template are trimmed, and `\t`, `\n` typed literally become a tab
/// and a newline.
pub fn template_text(source: &str) -> String {
    if source == "json" {
        return "{{json .}}".into();
    }
    let body = source.strip_prefix("table").unwrap_or(source);
    let text = body
        .trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n");
    label_calls(&text)
}

/// docker's `{{.Label "key"}}` is a Go method call with an argument, which gtmpl-ng does not
/// make: inside actions (outside string literals) `.Label` followed by a space becomes the
/// call `hxLabel .` of the function below, on the same dot.
fn label_calls(text: &str) -> String {
    const FIELD: &str = ".Label";
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied, mut in_action) = (0, 0, false);
    while i < b.len() {
        if !in_action {
            if text[i..].starts_with("{{") {
                in_action = true;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match b[i] {
            b'"' | b'\'' | b'`' => {
                let quote = b[i];
                i += 1;
                while i < b.len() && b[i] != quote {
                    i += if b[i] == b'\\' && quote != b'`' { 2 } else { 1 };
                }
                i += 1;
            }
            b'}' if text[i..].starts_with("}}") => {
                in_action = false;
                i += 2;
            }
            b'.' if text[i..].starts_with(FIELD)
                && matches!(b.get(i + FIELD.len()), Some(b' ' | b'\t'))
                && matches!(b[i - 1], b' ' | b'\t' | b'(' | b'{' | b'|') =>
            {
                out.push_str(&text[copied..i]);
                out.push_str("hxLabel .");
                i += FIELD.len();
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    out
}

/// Where a row keeps its labels for `hxLabel`: a key no template can name and `json` leaves
/// out.
pub const LABELS_KEY: &str = "\u{1}labels";

fn label(args: &[Value]) -> Result<Value, FuncError> {
    let [row, key] = arg(args, "Label", 2)? else {
        unreachable!()
    };
    let key = string(key, "Label")?;
    let labels = match row {
        Value::Object(o) | Value::Map(o) => o.get(LABELS_KEY),
        _ => None,
    };
    Ok(match labels {
        Some(Value::Map(m)) => m.get(key).cloned().unwrap_or_else(|| Value::from("")),
        _ => Value::from(""),
    })
}

fn parse_with(text: &str, funcs: &[(&str, gtmpl_ng::Func)]) -> Result<Template, FormatError> {
    let mut t = Template::default();
    t.add_funcs(funcs);
    t.parse(text).map_err(|e| FormatError(parse_message(&e)))?;
    Ok(t)
}

/// Go's parse errors name the line only: `template: :1: unclosed action`.
fn parse_message(e: &gtmpl_ng::ParseError) -> String {
    match e {
        gtmpl_ng::ParseError::WithContext(c, msg) => format!("template: :{}: {msg}", c.line),
        other => format!("template: :1: {other}"),
    }
}

/// The message of a failed render, as docker's Go template errors read: `template: :LINE:COL:
/// executing "" at <EXPR>: WHY`. gtmpl-ng names a missing field with the whole receiver
/// printed after it; docker says `can't evaluate field NAME`, and the receiver (the whole
/// container, with its labels and environment) stays out of an error line.
fn exec_message(exec: &gtmpl_ng::ExecError, source: &str) -> String {
    let Some(s) = exec.as_structured() else {
        return exec.to_string();
    };
    let text = template_text(source);
    let c = &s.context;
    let expr = text
        .lines()
        .nth(c.line.saturating_sub(1))
        .and_then(|l| l.get(c.col.saturating_sub(1)..c.col.saturating_sub(1) + c.len))
        .unwrap_or("");
    let why = match s.message.strip_prefix("no field `") {
        Some(rest) => format!(
            "can't evaluate field {}",
            rest.split('`').next().unwrap_or("")
        ),
        None => s.message.clone(),
    };
    format!(
        "template: :{}:{}: executing \"\" at <{expr}>: {why}",
        c.line,
        c.col.saturating_sub(1)
    )
}

// ---- docker's template functions (docker/cli templates/templates.go) ----

const DOCKER_FUNCS: &[(&str, gtmpl_ng::Func)] = &[
    ("json", json as gtmpl_ng::Func),
    ("split", split),
    ("join", join),
    ("title", title),
    ("lower", lower),
    ("upper", upper),
    ("pad", pad),
    ("truncate", truncate),
    ("hxLabel", label),
];

/// For the header row: the column's name goes through unchanged (docker's HeaderFunctions;
/// `pad` keeps its meaning so headers line up with padded cells).
const HEADER_FUNCS: &[(&str, gtmpl_ng::Func)] = &[
    ("json", first as gtmpl_ng::Func),
    ("split", first),
    ("join", first),
    ("title", first),
    ("lower", first),
    ("upper", first),
    ("pad", pad),
    ("truncate", first),
    ("hxLabel", label_header),
];

fn label_header(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from("LABEL"))
}

fn arg<'a>(args: &'a [Value], name: &str, n: usize) -> Result<&'a [Value], FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(args)
}

/// A string argument (Go's functions take `string`: another type is an error there too).
fn string<'a>(v: &'a Value, name: &str) -> Result<&'a str, FuncError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(FuncError::Generic(format!(
            "{name}: wrong type for value; expected string; got {}",
            go_type(other)
        ))),
    }
}

fn int(v: &Value, name: &str) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or(FuncError::UnableToConvertFromValue),
        other => Err(FuncError::Generic(format!(
            "{name}: wrong type for value; expected int; got {}",
            go_type(other)
        ))),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::NoValue | Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Array(_) => "slice",
        Value::Object(_) | Value::Map(_) => "map",
        Value::Function(_) => "func",
    }
}

fn first(args: &[Value]) -> Result<Value, FuncError> {
    Ok(args.first().cloned().unwrap_or(Value::NoValue))
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let [v] = arg(args, "json", 1)? else {
        unreachable!()
    };
    Ok(Value::from(to_json(v).to_string()))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let [s, sep] = arg(args, "split", 2)? else {
        unreachable!()
    };
    let (s, sep) = (string(s, "split")?, string(sep, "split")?);
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::from(c.to_string())).collect()
    } else {
        s.split(sep).map(Value::from).collect()
    };
    Ok(Value::Array(parts))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let [elems, sep] = arg(args, "join", 2)? else {
        unreachable!()
    };
    let sep = string(sep, "join")?;
    Ok(Value::from(match elems {
        Value::NoValue | Value::Nil => String::new(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(sep),
        other => other.to_string(),
    }))
}

/// Go's strings.Title: the first letter of every word upper-cased.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = arg(args, "title", 1)? else {
        unreachable!()
    };
    let mut out = String::new();
    let mut after_separator = true;
    for c in string(s, "title")?.chars() {
        if after_separator {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        after_separator = is_separator(c);
    }
    Ok(Value::from(out))
}

fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    !c.is_alphanumeric() && c.is_whitespace()
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = arg(args, "lower", 1)? else {
        unreachable!()
    };
    Ok(Value::from(string(s, "lower")?.to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = arg(args, "upper", 1)? else {
        unreachable!()
    };
    Ok(Value::from(string(s, "upper")?.to_uppercase()))
}

/// Spaces before and after a non-empty string.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let [s, before, after] = arg(args, "pad", 3)? else {
        unreachable!()
    };
    let s = string(s, "pad")?;
    let count = |v: &Value| -> Result<usize, FuncError> {
        let n = int(v, "pad")?;
        // A bound, so that `pad .Names 0 1000000000` cannot eat the memory.
        usize::try_from(n.clamp(0, 4096)).map_err(|_| FuncError::UnableToConvertFromValue)
    };
    if s.is_empty() {
        return Ok(Value::from(""));
    }
    Ok(Value::from(format!(
        "{}{s}{}",
        " ".repeat(count(before)?),
        " ".repeat(count(after)?)
    )))
}

/// The first N bytes (at a character boundary: Go would cut a character in two).
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let [s, n] = arg(args, "truncate", 2)? else {
        unreachable!()
    };
    let s = string(s, "truncate")?;
    let n = usize::try_from(int(n, "truncate")?.max(0)).unwrap_or(0);
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(Value::from(&s[..end]))
}

// ---- values ----

/// A JSON document as template data. Objects are structs (a missing field is an error, as in
/// docker's typed contexts), except under the keys in `go_maps`, which are Go maps there (a
/// missing key renders `<no value>`: `{{index .Config.Labels "x"}}`, `{{.Config.Labels.x}}`).
pub fn from_json(v: &serde_json::Value, go_maps: &[&str]) -> Value {
    convert(v, false, go_maps)
}

fn convert(v: &serde_json::Value, as_map: bool, go_maps: &[&str]) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => {
            Value::Array(a.iter().map(|i| convert(i, false, go_maps)).collect())
        }
        serde_json::Value::Object(o) => {
            let fields: HashMap<String, Value> = o
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        convert(v, go_maps.contains(&k.as_str()), go_maps),
                    )
                })
                .collect();
            match as_map {
                true => Value::Map(fields),
                false => Value::Object(fields),
            }
        }
    }
}

/// Template data back to JSON, keys sorted (Go's encoding/json sorts a map's keys).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.into(),
            (None, Some(u), _) => u.into(),
            (_, _, Some(f)) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        },
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            let sorted: std::collections::BTreeMap<&String, serde_json::Value> = o
                .iter()
                .filter(|(k, _)| k.as_str() != LABELS_KEY)
                .map(|(k, v)| (k, to_json(v)))
                .collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
    }
}

/// A row of string fields (docker's list contexts: every field a method returning a string).
pub fn row(fields: &[(&str, String)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.as_str())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn label_calls_become_function_calls_only_inside_actions() {
        assert_eq!(label_calls("{{.Label \"a\"}}"), "{{hxLabel . \"a\"}}");
        assert_eq!(
            label_calls("{{ upper (.Label \"a\") }} .Label \"b\" {{\".Label \\\"x\"}} {{.Labels}}"),
            "{{ upper (hxLabel . \"a\") }} .Label \"b\" {{\".Label \\\"x\"}} {{.Labels}}"
        );
        assert_eq!(
            label_calls("{{`.Label x`}}{{.Label `k`}}"),
            "{{`.Label x`}}{{hxLabel . `k`}}"
        );
    }

    proptest! {
        #[test]
        fn label_rewrite_leaves_other_templates_alone(t in "[{}. a-zL\"`\\\\()|]{0,40}") {
            let out = label_calls(&t);
            if !t.contains(".Label") {
                prop_assert_eq!(out, t);
            }
        }
    }

    fn ctx() -> Value {
        row(&[
            ("Names", "web".into()),
            ("Status", "Up 3 seconds".into()),
            ("ID", "0123456789ab".into()),
        ])
    }

    fn fmt(source: &str) -> Result<String, FormatError> {
        Format::parse(source)?.render(&ctx(), source)
    }

    #[test]
    fn fields_functions_and_json() {
        assert_eq!(fmt("{{.Names}}").unwrap(), "web");
        assert_eq!(fmt("  {{.Names}}:{{.ID}}  ").unwrap(), "web:0123456789ab");
        assert_eq!(fmt(r"{{.Names}}\t{{.ID}}").unwrap(), "web\t0123456789ab");
        assert_eq!(fmt("{{upper .Names}}").unwrap(), "WEB");
        assert_eq!(
            fmt("{{title \"hello wide-world\"}}").unwrap(),
            "Hello Wide-World"
        );
        assert_eq!(fmt("{{pad .Names 1 2}}|").unwrap(), " web  |");
        assert_eq!(fmt("{{truncate .ID 4}}").unwrap(), "0123");
        assert_eq!(
            fmt("{{join (split .Status \" \") \",\"}}").unwrap(),
            "Up,3,seconds"
        );
        assert_eq!(
            fmt("json").unwrap(),
            r#"{"ID":"0123456789ab","Names":"web","Status":"Up 3 seconds"}"#
        );
        assert_eq!(fmt("{{json .Names}}").unwrap(), r#""web""#);
    }

    #[test]
    fn errors_read_like_docker() {
        let e = fmt("{{.Nope}}").unwrap_err().to_string();
        assert_eq!(
            e,
            "template parsing error: template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope"
        );
        let e = fmt("{{.Names").unwrap_err().to_string();
        assert_eq!(e, "template parsing error: template: :1: unclosed action");
    }

    #[test]
    fn tables_have_a_header_and_aligned_columns() {
        let f = Format::parse(r"table {{.Names}}\t{{.Status}}").unwrap();
        let out = f
            .render_all(
                r"table {{.Names}}\t{{.Status}}",
                &[ctx()],
                &[("Names", "NAMES"), ("Status", "STATUS")],
            )
            .unwrap();
        assert_eq!(out, "NAMES     STATUS\nweb       Up 3 seconds\n");
    }

    #[test]
    fn maps_and_structs_differ_on_missing_keys() {
        let doc = serde_json::json!({"Config": {"Labels": {"a": "1"}}});
        let v = from_json(&doc, &["Labels"]);
        let f = |s: &str| Format::parse(s).unwrap().render(&v, s);
        assert_eq!(f("{{.Config.Labels.a}}").unwrap(), "1");
        assert_eq!(f("{{index .Config.Labels \"b\"}}").unwrap(), "<no value>");
        assert!(f("{{.Config.Nope}}").is_err());
        assert_eq!(f("{{json .Config}}").unwrap(), r#"{"Labels":{"a":"1"}}"#);
    }

    proptest! {
        /// Whatever the user types, parsing and rendering return (no panic, no hang).
        #[test]
        fn any_format_parses_or_fails_cleanly(s in "[ -~\t\n]{0,40}") {
            if let Ok(f) = Format::parse(&s) {
                let _ = f.render_all(&s, &[ctx()], &[("Names", "NAMES")]);
            }
        }

        #[test]
        fn any_template_piece_soup_returns(parts in proptest::collection::vec(
            prop_oneof![
                Just("{{"), Just("}}"), Just("."), Just("Names"), Just(" "), Just("|"),
                Just("\""), Just("("), Just(")"), Just("$x"), Just(":="), Just("range"),
                Just("end"), Just("if"), Just("json"), Just("pad"), Just("1"), Just("-"),
                Just("define"), Just("template"), Just("table"), Just("\\t"),
            ], 0..16)) {
            let s: String = parts.concat();
            if let Ok(f) = Format::parse(&s) {
                let _ = f.render_all(&s, &[ctx()], &[("Names", "NAMES")]);
            }
        }
    }
}
