//! Rust only: the check of a chat template's source against exponential
//! string growth, run before rendering (`prompt_utils::render_chat_template`).
//!
//! minijinja 2.24 bounds `*` on strings (100 MB,
//! `MAX_REPEATED_STRING_LEN`) and `range()` (100,000 items), but `~` and
//! `+` concatenate without any bound or hook (`ops::string_concat` is a
//! plain `format!`), and fuel counts instructions, not bytes: 40
//! doublings of a string cost some hundred units of fuel yet ask for
//! 2^41 bytes, which aborts the process. So the template source is checked
//! before rendering ([`check_template_growth`]): a `{% set %}` whose value
//! uses two or more variables of its own assignment cycle (`s = s ~ s`,
//! or `t = s` then `s = s ~ t`) can grow exponentially and is refused.
//! (In Jinja a plain `set` inside a `for` body is scoped to the
//! iteration, so the growth needs a `namespace` or unrolled statements;
//! the check is conservative and refuses the pattern wherever it is.)
//! Accumulating (`s = s ~ x`) grows linearly with fuel and stays allowed.
//! Not covered (documented gap): doubling through a macro's return value
//! or a `caller()` block; such a template still runs out of fuel only if
//! it loops long enough, so its string can grow in a few dozen calls.

use crate::{Error, Result};

/// One token of a template tag: what the growth check needs of Jinja.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(&'static str),
    Other,
}

/// The tokens of a tag's inside: identifiers, the punctuation that matters
/// (`.`, `|`, `=`, `(`, `,`), everything else (strings, numbers, other
/// operators) as [`Tok::Other`].
fn tokenize(code: &str) -> Vec<Tok> {
    let bytes = code.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\'' | b'"' => {
                i += 1;
                while let Some(&d) = bytes.get(i) {
                    i += 1;
                    if d == b'\\' {
                        i += 1;
                    } else if d == c {
                        break;
                    }
                }
                toks.push(Tok::Other);
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'_')
                {
                    i += 1;
                }
                toks.push(Tok::Ident(code.get(start..i).unwrap_or("").to_owned()));
            }
            c if c.is_ascii_digit() => {
                while bytes
                    .get(i)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'.' || *d == b'_')
                {
                    i += 1;
                }
                toks.push(Tok::Other);
            }
            b'=' | b'!' | b'<' | b'>' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                toks.push(Tok::Other);
            }
            b'.' | b'|' | b'=' | b'(' | b',' => {
                i += 1;
                toks.push(Tok::Punct(match c {
                    b'.' => ".",
                    b'|' => "|",
                    b'=' => "=",
                    b'(' => "(",
                    _ => ",",
                }));
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                i += 1;
                toks.push(Tok::Other);
            }
        }
    }
    toks
}

/// Jinja words that are not variables.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "recursive",
];

/// The variables `toks` reads, as dotted paths from their root
/// (`ns.content`, `message.content.split`); filter and test names and
/// keyword-argument names are not variables.
fn variable_refs(toks: &[Tok]) -> Vec<String> {
    let mut refs = Vec::new();
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        let prev = i.checked_sub(1).and_then(|p| toks.get(p));
        let is_var = match tok {
            Tok::Ident(name) => {
                !KEYWORDS.contains(&name.as_str())
                    && !matches!(prev, Some(Tok::Punct("." | "|")))
                    && !matches!(prev, Some(Tok::Ident(w)) if w == "is")
                    && !matches!(
                        (prev, toks.get(i.saturating_sub(2))),
                        (Some(Tok::Ident(n)), Some(Tok::Ident(w))) if n == "not" && w == "is"
                    )
                    && toks.get(i + 1) != Some(&Tok::Punct("="))
            }
            _ => false,
        };
        if let (true, Tok::Ident(name)) = (is_var, tok) {
            let mut path = name.clone();
            let mut j = i + 1;
            while let (Some(Tok::Punct(".")), Some(Tok::Ident(field))) =
                (toks.get(j), toks.get(j + 1))
            {
                path.push('.');
                path.push_str(field);
                j += 2;
            }
            refs.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    refs
}

/// Whether a read of `path` reads (part of) the variable `target`.
fn reads(path: &str, target: &str) -> bool {
    path == target
        || path
            .strip_prefix(target)
            .is_some_and(|r| r.starts_with('.'))
        || target
            .strip_prefix(path)
            .is_some_and(|r| r.starts_with('.'))
}

/// One `{% set %}`: its targets, the variables its value reads, its line.
struct SetStmt {
    targets: Vec<String>,
    refs: Vec<String>,
    line: usize,
}

/// The `{% ... %}` and `{{ ... }}` tags of `template`: (is a statement,
/// inside text, line). Comments are skipped, `{% raw %}` bodies too.
fn tags(template: &str) -> Vec<(bool, &str, usize)> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    let mut in_raw = false;
    while let Some(start) = rest.find('{') {
        let after = rest.get(start + 1..).unwrap_or("");
        let (close, statement) = match after.as_bytes().first() {
            Some(b'%') => ("%}", true),
            Some(b'{') => ("}}", false),
            Some(b'#') => ("#}", false),
            _ => {
                offset += start + 1;
                rest = after;
                continue;
            }
        };
        let body = after.get(1..).unwrap_or("");
        let end = find_close(body, close, close != "#}");
        let inner = body.get(..end).unwrap_or(body);
        let line = 1 + template
            .get(..offset + start)
            .unwrap_or("")
            .matches('\n')
            .count();
        let consumed = start + 2 + end + close.len();
        if close != "#}" {
            let code = inner.trim_matches(['-', '+', '~']).trim();
            let word = code.split_whitespace().next().unwrap_or("");
            if statement && word == "endraw" {
                in_raw = false;
            } else if !in_raw {
                if statement && word == "raw" {
                    in_raw = true;
                } else {
                    out.push((statement, code, line));
                }
            }
        }
        offset += consumed.min(rest.len());
        rest = rest.get(consumed..).unwrap_or("");
    }
    out
}

/// The offset of `close` in `body`, skipping quoted strings when `code`.
fn find_close(body: &str, close: &str, code: bool) -> usize {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut quote = None;
    while i < bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(0);
        match quote {
            Some(q) => {
                if c == b'\\' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None if code && (c == b'\'' || c == b'"') => quote = Some(c),
            None if body.get(i..).is_some_and(|r| r.starts_with(close)) => return i,
            None => {}
        }
        i += 1;
    }
    body.len()
}

/// Refuses a template that can grow a string (or list) exponentially: a
/// `{% set %}` whose value reads two or more variables of its own
/// assignment cycle, such as `{% set s = s ~ s %}` (see the top of this
/// file). The check reads the source only; it is an
/// [`Error::LimitExceeded`] naming the line.
pub fn check_template_growth(template: &str) -> Result<()> {
    let mut sets: Vec<SetStmt> = Vec::new();
    // Open `{% set x %}...{% endset %}` blocks: their value is their body.
    let mut open_blocks: Vec<usize> = Vec::new();
    for (statement, code, line) in tags(template) {
        let toks = tokenize(code);
        if !statement {
            for &b in &open_blocks {
                if let Some(set) = sets.get_mut(b) {
                    set.refs.extend(variable_refs(&toks));
                }
            }
            continue;
        }
        match toks.first() {
            Some(Tok::Ident(w)) if w == "set" => {
                let eq = toks.iter().position(|t| *t == Tok::Punct("="));
                let (lhs, rhs) = match eq {
                    Some(eq) => (toks.get(1..eq).unwrap_or(&[]), toks.get(eq + 1..)),
                    None => (toks.get(1..).unwrap_or(&[]), None),
                };
                let targets = variable_refs(lhs);
                match rhs {
                    Some(rhs) => sets.push(SetStmt {
                        targets,
                        refs: variable_refs(rhs),
                        line,
                    }),
                    None => {
                        // A block set: `{% set x %}` or `{% set x | filter %}`.
                        let targets = targets.into_iter().take(1).collect();
                        open_blocks.push(sets.len());
                        sets.push(SetStmt {
                            targets,
                            refs: Vec::new(),
                            line,
                        });
                    }
                }
            }
            Some(Tok::Ident(w)) if w == "endset" => {
                open_blocks.pop();
            }
            _ => {
                let refs = variable_refs(&toks);
                for &b in &open_blocks {
                    if let Some(set) = sets.get_mut(b) {
                        set.refs.extend(refs.iter().cloned());
                    }
                }
            }
        }
    }
    // Assignment graph over the targets: an edge u -> v when a set of v
    // reads u.
    let mut names: Vec<&str> = sets
        .iter()
        .flat_map(|s| s.targets.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let index = |name: &str| names.binary_search(&name).ok();
    let n = names.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for set in &sets {
        for target in &set.targets {
            let Some(v) = index(target) else { continue };
            for (u, name) in names.iter().enumerate() {
                if set.refs.iter().any(|r| reads(r, name))
                    && let Some(list) = edges.get_mut(u)
                {
                    list.push(v);
                }
            }
        }
    }
    // reach[u] = the targets reachable from u (breadth-first per node).
    let reach: Vec<Vec<bool>> = (0..n)
        .map(|start| {
            let mut seen = vec![false; n];
            let mut queue = vec![start];
            while let Some(u) = queue.pop() {
                for &v in edges.get(u).into_iter().flatten() {
                    if let Some(slot) = seen.get_mut(v)
                        && !*slot
                    {
                        *slot = true;
                        queue.push(v);
                    }
                }
            }
            seen
        })
        .collect();
    let reaches = |u: usize, v: usize| reach.get(u).and_then(|r| r.get(v)).copied() == Some(true);
    for set in &sets {
        for target in &set.targets {
            let Some(v) = index(target) else { continue };
            // Reads of variables in v's cycle (v included when it feeds
            // itself).
            let in_cycle = set
                .refs
                .iter()
                .filter(|r| {
                    names
                        .iter()
                        .enumerate()
                        .any(|(u, name)| reads(r, name) && reaches(u, v) && reaches(v, u))
                })
                .count();
            if in_cycle >= 2 {
                return Err(Error::LimitExceeded {
                    context: "chat template".into(),
                    limit: "template string growth",
                    message: format!(
                        "line {}: `set {target}` reads {in_cycle} values of its own assignment \
                         cycle ({}), so repeating it can double a string each time and exhaust \
                         memory (minijinja cannot bound `~` or `+`); rewrite the template to \
                         append other values instead",
                        set.line,
                        set.refs.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}
