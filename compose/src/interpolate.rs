//! `${VAR}` interpolation as the compose specification defines it, and `.env` file parsing.

use std::collections::BTreeMap;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${VAR:?message}` / `${VAR?message}` with VAR unset (or empty for `:?`).
    Required { var: String, message: String },
    /// A `${` with no closing brace, or an invalid name.
    Syntax(String),
}

impl std::fmt::Display for InterpolationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpolationError::Required { var, message } if message.is_empty() => {
                write!(f, "required variable {var} is missing a value")
            }
            InterpolationError::Required { var, message } => {
                write!(f, "required variable {var} is missing a value: {message}")
            }
            InterpolationError::Syntax(m) => f.write_str(m),
        }
    }
}

/// How deeply `${A:-${B:-…}}` may nest: the expansion recurses once per level.
pub const MAX_NESTING: usize = 32;

/// Replaces `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:+alt}`,
/// `${VAR+alt}` (defaults may nest, up to [`MAX_NESTING`] deep) and `$$` (a literal `$`). Errors give the character
/// position and the variable, never the text: the text may hold a secret.
pub fn interpolate(input: &str, vars: &BTreeMap<String, String>) -> Result<String, InterpolationError> {
    let chars: Vec<char> = input.chars().collect();
    let (out, _) = expand(&chars, 0, vars, false, 0)?;
    Ok(out)
}

/// Expands from `i`; when `in_braces`, stops at the `}` that closes the enclosing `${` and returns its index.
fn expand(chars: &[char], mut i: usize, vars: &BTreeMap<String, String>, in_braces: bool, depth: usize) -> Result<(String, usize), InterpolationError> {
    let mut out = String::new();
    while i < chars.len() {
        let c = chars[i];
        if in_braces && c == '}' {
            return Ok((out, i));
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                if depth >= MAX_NESTING {
                    return Err(InterpolationError::Syntax(format!("`${{` nested more than {MAX_NESTING} deep at character {}; nest fewer defaults", i + 1)));
                }
                let (value, end) = braced(chars, i + 2, vars, depth + 1)?;
                out.push_str(&value);
                i = end + 1;
            }
            Some(c2) if c2.is_ascii_alphabetic() || *c2 == '_' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
                i = end;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    if in_braces {
        return Err(InterpolationError::Syntax("unclosed `${`; add the missing `}` or write `$$` for a literal `$`".to_string()));
    }
    Ok((out, i))
}

/// Parses the inside of `${...}` starting at `i`; returns the value and the index of the closing brace.
fn braced(chars: &[char], i: usize, vars: &BTreeMap<String, String>, depth: usize) -> Result<(String, usize), InterpolationError> {
    let mut end = i;
    while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
        end += 1;
    }
    let name: String = chars[i..end].iter().collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(InterpolationError::Syntax(format!("invalid variable name after `${{` at character {}; names are letters, digits and _", i - 1)));
    }
    let value = vars.get(&name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let plain = value.cloned().unwrap_or_default();
    let rest = &chars[end..];
    let (op, op_len) = match rest {
        ['}', ..] => return Ok((plain, end)),
        [':', '-', ..] => (":-", 2),
        [':', '?', ..] => (":?", 2),
        [':', '+', ..] => (":+", 2),
        ['-', ..] => ("-", 1),
        ['?', ..] => ("?", 1),
        ['+', ..] => ("+", 1),
        [] => {
            return Err(InterpolationError::Syntax(format!("unclosed `${{{name}`; add the missing `}}`")));
        }
        [c, ..] => {
            return Err(InterpolationError::Syntax(format!(
                "unexpected {c:?} after variable {name} at character {}; expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`",
                end + 1
            )));
        }
    };
    // The word after the operator may itself contain interpolations.
    let (word, close) = expand(chars, end + op_len, vars, true, depth)?;
    let value = match op {
        ":-" => {
            if non_empty {
                plain
            } else {
                word
            }
        }
        "-" => {
            if set {
                plain
            } else {
                word
            }
        }
        ":+" => {
            if non_empty {
                word
            } else {
                String::new()
            }
        }
        "+" => {
            if set {
                word
            } else {
                String::new()
            }
        }
        ":?" | "?" => {
            let ok = if op == ":?" { non_empty } else { set };
            if !ok {
                return Err(InterpolationError::Required { var: name, message: word });
            }
            plain
        }
        _ => unreachable!("operators are listed above"),
    };
    Ok((value, close))
}

/// Parses a `.env` file: `KEY=VALUE` lines, optional `export `, `#` comments, single quotes (literal), double quotes
/// (escapes, interpolation) and unquoted values (interpolation, ` #` starts a comment). Earlier keys and `base`
/// are visible to interpolation. Returns (line number, message) on a malformed line.
pub fn parse_env_file(text: &str, base: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut out = BTreeMap::new();
    // What interpolation sees: `base`, then each key as it is read (one map, not a copy per line).
    let mut scope = base.clone();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, "expected KEY=VALUE (the line has no `=`)".to_string()));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
            return Err((n + 1, format!("invalid variable name {key:?}")));
        }
        let value = value.trim_start();
        let parsed = if let Some(rest) = value.strip_prefix('\'') {
            let Some(end) = rest.find('\'') else {
                return Err((n + 1, format!("unterminated single quote in value of {key}")));
            };
            rest[..end].to_string()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(other) => s.push(other),
                        None => s.push('\\'),
                    },
                    c => s.push(c),
                }
            }
            if !closed {
                return Err((n + 1, format!("unterminated double quote in value of {key}")));
            }
            interpolate(&s, &scope).map_err(|e| (n + 1, format!("in the value of {key}: {e}")))?
        } else {
            let v = match value.find(" #") {
                Some(i) => &value[..i],
                None => value,
            };
            interpolate(v.trim_end(), &scope).map_err(|e| (n + 1, format!("in the value of {key}: {e}")))?
        };
        scope.insert(key.to_string(), parsed.clone());
        out.insert(key.to_string(), parsed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("SET", "value"), ("EMPTY", ""), ("PORT", "5433")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn forms() {
        let v = vars();
        let cases = [
            ("$SET", "value"),
            ("${SET}", "value"),
            ("${UNSET}", ""),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("$$SET", "$SET"),
            ("$${SET}", "${SET}"),
            ("${UNSET:-${PORT}}:5432", "5433:5432"),
            ("${UNSET:-${ALSO_UNSET:-x}}", "x"),
            ("a $ b", "a $ b"),
            ("${DEV_POSTGRES_PORT:-5433}:5432", "5433:5432"),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, &v).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn errors() {
        let v = vars();
        assert_eq!(
            interpolate("${UNSET:?set it in .env}", &v).unwrap_err(),
            InterpolationError::Required { var: "UNSET".into(), message: "set it in .env".into() }
        );
        assert!(interpolate("${EMPTY:?}", &v).is_err());
        assert_eq!(interpolate("${EMPTY?}", &v).unwrap(), "");
        assert!(matches!(interpolate("${SET", &v), Err(InterpolationError::Syntax(_))));
        assert!(matches!(interpolate("${1X}", &v), Err(InterpolationError::Syntax(_))));
    }

    #[test]
    fn env_file() {
        let text = "# comment\nexport A=1\nB = 'lit $A'\nC=\"x\\ny $A\"\nD=plain ${A}2 # trailing\nE=\n";
        let env = parse_env_file(text, &BTreeMap::new()).unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "lit $A");
        assert_eq!(env["C"], "x\ny 1");
        assert_eq!(env["D"], "plain 12");
        assert_eq!(env["E"], "");
        assert_eq!(parse_env_file("NOPE", &BTreeMap::new()).unwrap_err().0, 1);
    }

    #[test]
    fn nesting_is_bounded_and_errors_do_not_echo_values() {
        let v = vars();
        let ok = format!("{}x{}", "${A:-".repeat(MAX_NESTING), "}".repeat(MAX_NESTING));
        assert_eq!(interpolate(&ok, &BTreeMap::new()).unwrap(), "x");
        let deep = format!("{}x{}", "${A:-".repeat(100_000), "}".repeat(100_000));
        let err = interpolate(&deep, &v).unwrap_err().to_string();
        assert!(err.contains("nested more than 32"), "{err}");
        let env = format!("A={}x\n", "${A:-".repeat(100_000));
        let (line, msg) = parse_env_file(&env, &BTreeMap::new()).unwrap_err();
        assert_eq!(line, 1);
        assert!(msg.contains("in the value of A") && msg.contains("nested more than"), "{msg}");
        let (_, msg) = parse_env_file("PASSWORD=\"hunter2${oops\"\n", &BTreeMap::new()).unwrap_err();
        assert!(msg.contains("PASSWORD") && !msg.contains("hunter2"), "{msg}");
        let (_, msg) = parse_env_file("PASSWORD=hunter2${oops\n", &BTreeMap::new()).unwrap_err();
        assert!(!msg.contains("hunter2"), "{msg}");
        let (_, msg) = parse_env_file("hunter2\n", &BTreeMap::new()).unwrap_err();
        assert!(!msg.contains("hunter2"), "{msg}");
        let (_, msg) = parse_env_file("K=${SECRET_hunter2 x}\n", &BTreeMap::new()).unwrap_err();
        assert!(!msg.contains(" x"), "{msg}");
    }
}
