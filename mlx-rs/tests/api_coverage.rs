//! Every function of the mlx-c headers this crate was built against is
//! called somewhere in `src/`, or listed in `tests/unwrapped.txt` with the
//! reason it is not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Headers whose functions make up MLX's C API. Left out: `half.h`,
/// `optional.h` (types only), `mlx.h` (includes only).
const HEADERS: &[&str] = &[
    "array.h",
    "closure.h",
    "compile.h",
    "cuda.h",
    "device.h",
    "distributed.h",
    "distributed_group.h",
    "error.h",
    "export.h",
    "fast.h",
    "fft.h",
    "graph_utils.h",
    "io.h",
    "io_types.h",
    "linalg.h",
    "map.h",
    "memory.h",
    "metal.h",
    "ops.h",
    "random.h",
    "stream.h",
    "string.h",
    "transforms.h",
    "transforms_impl.h",
    "vector.h",
    "version.h",
];

/// Names of functions declared in a C header: an identifier starting with
/// `mlx_` or `_mlx_` directly followed by `(`, outside comments.
fn declared_functions(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let code = strip_comments(text);
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &code[i..];
        if at_word_start && (rest.starts_with("mlx_") || rest.starts_with("_mlx_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let after = rest[len..].trim_start();
            // A declaration: `name(` not preceded by `(*` (function-pointer
            // parameters are written `(*fun)(...)`).
            let is_pointer = i >= 2 && code[..i].trim_end().ends_with("(*");
            if after.starts_with('(') && !is_pointer {
                names.insert(rest[..len].to_string());
            }
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    // Preprocessor lines (`#define mlx_error(...)`) declare no function.
    out.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("src folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            // Code only: a function named in a comment is not wrapped.
            let text = std::fs::read_to_string(&path).expect("source file");
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

#[test]
fn every_mlx_c_function_is_wrapped_or_listed_with_a_reason() {
    let include = PathBuf::from(env!("MLX_RS_MLX_C_INCLUDE")).join("mlx/c");
    let mut declared = BTreeMap::new();
    for header in HEADERS {
        let text = std::fs::read_to_string(include.join(header))
            .unwrap_or_else(|e| panic!("{}: {e}", include.join(header).display()));
        for name in declared_functions(&text) {
            declared.insert(name, *header);
        }
    }
    assert!(
        declared.len() > 600,
        "parsed only {} functions from {}",
        declared.len(),
        include.display()
    );

    let mut sources = String::new();
    rust_sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    // Named in code: called (`sys::name(`), passed as a function value, or
    // handed to a wrapping macro (`unary_op!(abs => mlx_abs)`).
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let called = |name: &str| {
        sources.match_indices(name).any(|(at, _)| {
            let before = sources[..at].chars().next_back();
            let after = sources[at + name.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
    };
    // A listed name may hold `*` wildcards (`mlx_vector_*_set_data`).
    let matches = |pattern: &str, name: &str| {
        let parts: Vec<&str> = pattern.split('*').collect();
        let mut rest = name;
        for (i, part) in parts.iter().enumerate() {
            match rest.find(part) {
                Some(0) if i == 0 => rest = &rest[part.len()..],
                Some(at) if i > 0 => rest = &rest[at + part.len()..],
                _ => return false,
            }
        }
        parts
            .last()
            .is_none_or(|last| last.is_empty() || name.ends_with(last))
    };

    let listed_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/unwrapped.txt"))
            .expect("tests/unwrapped.txt");
    let mut listed = BTreeMap::new();
    for line in listed_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, reason) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("`{line}` lacks `: reason`"));
        assert!(
            !reason.trim().is_empty(),
            "{name} is listed without a reason"
        );
        listed.insert(name.trim().to_string(), reason.trim().to_string());
    }

    let missing: Vec<String> = declared
        .iter()
        .filter(|(name, _)| !called(name) && !listed.keys().any(|p| matches(p, name)))
        .map(|(name, header)| format!("{name} ({header})"))
        .collect();
    let stale: Vec<&String> = listed
        .keys()
        .filter(|p| {
            let hits: Vec<&String> = declared.keys().filter(|name| matches(p, name)).collect();
            hits.is_empty() || hits.iter().all(|name| called(name))
        })
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "{} mlx-c functions are neither wrapped nor listed in tests/unwrapped.txt:\n  {}\n\
         listed but wrapped or not declared (remove them from the list): {stale:?}",
        missing.len(),
        missing.join("\n  ")
    );
}
