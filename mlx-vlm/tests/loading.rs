//! Checkpoint loading: the three weight layouts, sharding, quantization,
//! strict errors, configs and the hub cache.
//!
//! The model is a test-local stand-in (`StubModel`) holding exactly the
//! parameters of Qwen2.5-VL in MLX layout, with Python's `Model.sanitize`
//! key mapping, so loading is tested apart from the model's forward code.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use mlx_vlm::mlx_rs::nn::{Embedding, Item, ItemMut, Linear, Module, ModuleExt, Param};
use mlx_vlm::mlx_rs::ops::{QuantizationMode, QuantizeOptions};
use mlx_vlm::mlx_rs::{self, Array, Dtype};
use mlx_vlm::models::{Cache, FamilyModel, VlmModel};
use mlx_vlm::registry::Family;
use mlx_vlm::utils::{self, LoadOptions};
use mlx_vlm::{Error, Result, fixtures};
use serde_json::{Value, json};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/fixtures/qwen2_5_vl");

// ------------------------------------------------------------ stand-in model

/// Python's `Model.sanitize` key mapping plus the vision tower's conv
/// transpose (channels-last unless already so).
fn python_sanitize(weights: HashMap<String, Array>) -> HashMap<String, Array> {
    weights
        .into_iter()
        .map(|(mut k, mut v)| {
            if !k.contains("vision_tower") {
                k = k.replace("visual", "vision_tower");
            }
            if !k.contains("language_model") {
                if k.contains("model") {
                    k = k.replace("model", "language_model.model");
                } else if k.contains("lm_head") {
                    k = k.replace("lm_head", "language_model.lm_head");
                }
            }
            if k.contains("patch_embed.proj.weight") && v.shape()[4] != 3 {
                v = v.transpose([0, 2, 3, 4, 1]).unwrap();
            }
            (k, v)
        })
        .collect()
}

struct StubModel {
    linears: BTreeMap<String, Linear>,
    embeddings: BTreeMap<String, Embedding>,
    params: BTreeMap<String, Param>,
}

impl StubModel {
    /// The Qwen2.5-VL parameter tree of `config`, in MLX keys.
    fn new(config: &Value) -> Result<StubModel> {
        let shapes = fixtures::hf_param_shapes(config);
        let mut model = StubModel {
            linears: BTreeMap::new(),
            embeddings: BTreeMap::new(),
            params: BTreeMap::new(),
        };
        for (key, shape) in &shapes {
            let mlx_key = python_sanitize(HashMap::from([(
                key.clone(),
                mlx_rs::ops::zeros(&[1, 1, 1, 1, 1], Dtype::Float32)?,
            )]))
            .into_keys()
            .next()
            .unwrap();
            if let Some(path) = mlx_key.strip_suffix(".weight") {
                if key.contains("embed_tokens") {
                    model
                        .embeddings
                        .insert(path.into(), Embedding::new(shape[0], shape[1])?);
                    continue;
                }
                if shape.len() == 2 {
                    let bias = shapes.contains_key(&key.replace(".weight", ".bias"));
                    model
                        .linears
                        .insert(path.into(), Linear::new(shape[1], shape[0], bias)?);
                    continue;
                }
            }
            if key.ends_with(".bias")
                && shapes
                    .get(&key.replace(".bias", ".weight"))
                    .is_some_and(|s| s.len() == 2)
            {
                continue;
            }
            let mut shape = shape.clone();
            if shape.len() == 5 {
                shape = vec![shape[0], shape[2], shape[3], shape[4], shape[1]];
            }
            model.params.insert(
                mlx_key,
                Param::new(mlx_rs::ops::zeros(&shape, Dtype::Float32)?),
            );
        }
        Ok(model)
    }
}

impl Module for StubModel {
    fn items<'a>(&'a self, f: &mut dyn FnMut(&str, Item<'a>)) {
        for (k, m) in &self.linears {
            f(k, Item::Module(m));
        }
        for (k, m) in &self.embeddings {
            f(k, Item::Module(m));
        }
        for (k, p) in &self.params {
            f(k, Item::Param(p));
        }
    }
    fn items_mut(&mut self, f: &mut dyn FnMut(&str, ItemMut<'_>)) {
        for (k, m) in &mut self.linears {
            f(k, ItemMut::Module(m));
        }
        for (k, m) in &mut self.embeddings {
            f(k, ItemMut::Module(m));
        }
        for (k, p) in &mut self.params {
            f(k, ItemMut::Param(p));
        }
    }
}

impl FamilyModel for StubModel {
    type Inputs = ();
    type Prefill = ();
    type State = ();

    const FAMILY: &'static Family = &mlx_vlm::models::qwen2_5_vl::FAMILY;

    fn estimate_memory(
        &self,
        _request: &mlx_vlm::preflight::MemoryRequest,
    ) -> Result<mlx_vlm::preflight::MemoryEstimate> {
        Ok(Default::default())
    }

    fn model_type(&self) -> &str {
        "qwen2_5_vl"
    }
    fn get_input_embeddings(
        &self,
        _: &Array,
        _: Option<&()>,
        _: Option<&Array>,
    ) -> Result<(Array, ())> {
        unimplemented!("loading tests do not run the model")
    }
    fn language_model(
        &self,
        _: &Array,
        _: Option<&Array>,
        _: &mut [Box<dyn Cache>],
        _: Option<&()>,
        _: &mut (),
    ) -> Result<Array> {
        unimplemented!("loading tests do not run the model")
    }
    fn make_cache(&self, _: Option<i32>) -> Vec<Box<dyn Cache>> {
        Vec::new()
    }
    fn sanitize(&self, weights: HashMap<String, Array>) -> Result<HashMap<String, Array>> {
        // As the Qwen2 families do: transformers-5 keys first.
        Ok(python_sanitize(utils::normalize_transformers5_layout(
            weights,
        )))
    }
    fn eos_token_ids(&self) -> Vec<u32> {
        Vec::new()
    }
}

fn stub(config: &Value, _file: &str) -> Result<Box<dyn VlmModel>> {
    Ok(Box::new(StubModel::new(config)?))
}

fn params(model: &dyn VlmModel) -> BTreeMap<String, Array> {
    let module: &dyn Module = model;
    module.parameters()
}

fn load(dir: &Path) -> Result<Box<dyn VlmModel>> {
    utils::load_model_with(dir, &LoadOptions::default(), stub)
}

// ------------------------------------------------------------ checkpoints

fn hf_weights(dtype: Dtype) -> BTreeMap<String, Array> {
    fixtures::hf_weights(&fixtures::tiny_config(), dtype).unwrap()
}

fn write_checkpoint(dir: &Path, config: &Value, weights: &BTreeMap<String, Array>) {
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
    for name in [
        "generation_config.json",
        "chat_template.json",
        "preprocessor_config.json",
    ] {
        fs::copy(Path::new(SHARED).join(name), dir.join(name)).unwrap();
    }
    mlx_rs::io::save_safetensors(dir.join("model.safetensors"), weights, None).unwrap();
}

fn renamed(
    weights: &BTreeMap<String, Array>,
    rename: impl Fn(&str) -> String,
) -> BTreeMap<String, Array> {
    weights
        .iter()
        .map(|(k, v)| (rename(k), v.clone()))
        .collect()
}

fn assert_same(a: &BTreeMap<String, Array>, b: &BTreeMap<String, Array>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, x) in a {
        let y = &b[k];
        assert_eq!(x.dtype(), y.dtype(), "{k}");
        assert!(
            mlx_rs::ops::array_equal(x, y, false)
                .unwrap()
                .item::<bool>()
                .unwrap(),
            "{k} differs"
        );
    }
}

/// The parameters a correct load of `weights` (Hugging Face layout) gives.
fn expected(weights: &BTreeMap<String, Array>) -> BTreeMap<String, Array> {
    python_sanitize(weights.clone().into_iter().collect())
        .into_iter()
        .collect()
}

// ------------------------------------------------------------ layouts

#[test]
fn three_layouts_load_the_same_parameters() {
    let config = fixtures::tiny_config();
    let hf = hf_weights(Dtype::Float32);
    let want = expected(&hf);

    let layout1 = tempfile::tempdir().unwrap();
    write_checkpoint(layout1.path(), &config, &hf);
    assert_same(&params(load(layout1.path()).unwrap().as_ref()), &want);

    // mlx-community: already renamed, conv channels-last.
    let layout2 = tempfile::tempdir().unwrap();
    write_checkpoint(layout2.path(), &config, &want);
    assert_same(&params(load(layout2.path()).unwrap().as_ref()), &want);

    // transformers 5.
    let tf5 = renamed(&hf, |k| {
        if let Some(rest) = k.strip_prefix("visual.") {
            format!("model.visual.{rest}")
        } else if let Some(rest) = k.strip_prefix("model.") {
            format!("model.language_model.{rest}")
        } else {
            k.to_string()
        }
    });
    let layout3 = tempfile::tempdir().unwrap();
    write_checkpoint(layout3.path(), &config, &tf5);
    assert_same(&params(load(layout3.path()).unwrap().as_ref()), &want);
}

#[test]
fn bf16_checkpoint_keeps_its_dtype_and_casts_on_request() {
    let config = fixtures::tiny_config();
    let hf = hf_weights(Dtype::Bfloat16);
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &config, &hf);
    assert_same(&params(load(dir.path()).unwrap().as_ref()), &expected(&hf));

    let options = LoadOptions {
        dtype: Some(Dtype::Float32),
        ..LoadOptions::default()
    };
    let model = utils::load_model_with(dir.path(), &options, stub).unwrap();
    let f32_weights = hf_weights(Dtype::Float32);
    assert_same(&params(model.as_ref()), &expected(&f32_weights));
}

#[test]
fn sharded_checkpoint_with_index() {
    let config = fixtures::tiny_config();
    let hf = hf_weights(Dtype::Float32);
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &config, &BTreeMap::new());
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let (vision, text): (BTreeMap<_, _>, BTreeMap<_, _>) = hf
        .clone()
        .into_iter()
        .partition(|(k, _)| k.starts_with("visual."));
    let shard1 = "model-00001-of-00002.safetensors";
    let shard2 = "model-00002-of-00002.safetensors";
    mlx_rs::io::save_safetensors(dir.path().join(shard1), &vision, None).unwrap();
    mlx_rs::io::save_safetensors(dir.path().join(shard2), &text, None).unwrap();
    let mut map = serde_json::Map::new();
    for k in vision.keys() {
        map.insert(k.clone(), json!(shard1));
    }
    for k in text.keys() {
        map.insert(k.clone(), json!(shard2));
    }
    // A stray file outside the index is not loaded.
    mlx_rs::io::save_safetensors(
        dir.path().join("consolidated.safetensors"),
        [("junk", mlx_rs::ops::zeros(&[2], Dtype::Float32).unwrap())],
        None,
    )
    .unwrap();
    let index = json!({"metadata": {}, "weight_map": map});
    fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    assert_same(&params(load(dir.path()).unwrap().as_ref()), &expected(&hf));

    // A key the index lists that its shard lacks.
    map.insert("model.ghost.weight".into(), json!(shard2));
    let index = json!({"weight_map": map});
    fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let err = load(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{msg}");
    assert!(
        msg.contains("model.ghost.weight") && msg.contains(shard2),
        "{msg}"
    );
}

// ------------------------------------------------------------ quantization

fn quantize_like_convert(weights: &BTreeMap<String, Array>, bits: i32) -> BTreeMap<String, Array> {
    // As `mlx_vlm.convert`: the language model's Linear and Embedding
    // weights, not the vision tower.
    let mut out = BTreeMap::new();
    for (k, v) in weights {
        let quantize = k.starts_with("language_model.") && k.ends_with(".weight") && v.ndim() == 2;
        if !quantize {
            out.insert(k.clone(), v.clone());
            continue;
        }
        let q = mlx_rs::ops::quantize(
            v,
            QuantizeOptions {
                group_size: Some(64),
                bits: Some(bits),
                mode: QuantizationMode::Affine,
                global_scale: None,
            },
        )
        .unwrap();
        let base = k.strip_suffix(".weight").unwrap();
        out.insert(k.clone(), q.weights);
        out.insert(format!("{base}.scales"), q.scales);
        out.insert(format!("{base}.biases"), q.biases.unwrap());
    }
    out
}

#[test]
fn quantized_checkpoint_loads_exactly_its_quantized_layers() {
    let hf = hf_weights(Dtype::Bfloat16);
    for bits in [4, 8] {
        let weights = quantize_like_convert(&expected(&hf), bits);
        let mut config = fixtures::tiny_config();
        config["quantization"] = json!({"group_size": 64, "bits": bits, "mode": "affine"});
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &config, &weights);
        let loaded = params(load(dir.path()).unwrap().as_ref());
        assert_same(&loaded, &weights);
        assert!(loaded.contains_key("language_model.model.embed_tokens.scales"));
        assert!(!loaded.contains_key("vision_tower.blocks.0.attn.qkv.scales"));
    }
}

/// Per-layer `quantization` entries, as `mlx_vlm.convert --quant-predicate
/// mixed_3_6` writes them: a layer with its own entry loads with its bits
/// (named with or without the `language_model.` prefix), one set to `false`
/// stays float, the rest take the checkpoint's spec.
#[test]
fn per_layer_quantization_entries_load_each_layers_bits() {
    let base = expected(&hf_weights(Dtype::Bfloat16));
    let six = "language_model.model.layers.0.mlp.down_proj";
    let float = "language_model.model.layers.1.self_attn.o_proj";
    let mut weights = quantize_like_convert(&base, 3);
    let one = |key: &str| {
        BTreeMap::from([(
            format!("{key}.weight"),
            base[&format!("{key}.weight")].clone(),
        )])
    };
    weights.extend(quantize_like_convert(&one(six), 6));
    for suffix in ["scales", "biases"] {
        weights.remove(&format!("{float}.{suffix}"));
    }
    weights.extend(one(float));
    let mut config = fixtures::tiny_config();
    config["quantization"] = json!({
        "group_size": 64,
        "bits": 3,
        "mode": "affine",
        six: {"group_size": 64, "bits": 6},
        float.strip_prefix("language_model.").unwrap(): false,
    });
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &config, &weights);
    let loaded = params(load(dir.path()).unwrap().as_ref());
    assert_same(&loaded, &weights);
    assert!(!loaded.contains_key(&format!("{float}.scales")));

    // Without the entries the 6-bit layer cannot load as 3-bit.
    config["quantization"] = json!({"group_size": 64, "bits": 3, "mode": "affine"});
    write_checkpoint(dir.path(), &config, &weights);
    let message = load(dir.path()).err().expect("a shape error").to_string();
    assert!(message.contains(six), "{message}");
}

// ------------------------------------------------------------ errors

fn load_error(weights: &BTreeMap<String, Array>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &fixtures::tiny_config(), weights);
    let err = load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    msg
}

#[test]
fn missing_extra_and_misshapen_weights_are_named() {
    let mut hf = hf_weights(Dtype::Float32);
    hf.remove("model.norm.weight");
    let msg = load_error(&hf);
    assert!(msg.contains("language_model.model.norm.weight"), "{msg}");

    let mut hf = hf_weights(Dtype::Float32);
    hf.insert(
        "model.extra.weight".into(),
        mlx_rs::ops::zeros(&[3], Dtype::Float32).unwrap(),
    );
    let msg = load_error(&hf);
    assert!(msg.contains("language_model.model.extra.weight"), "{msg}");

    let mut hf = hf_weights(Dtype::Float32);
    hf.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        mlx_rs::ops::zeros(&[7, 64], Dtype::Float32).unwrap(),
    );
    hf.remove("model.norm.weight");
    let msg = load_error(&hf);
    assert!(
        msg.contains("language_model.model.layers.1.mlp.up_proj.weight"),
        "{msg}"
    );
    assert!(msg.contains("[7, 64]"), "{msg}");
    // Every problem at once.
    assert!(msg.contains("language_model.model.norm.weight"), "{msg}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(
        dir.path(),
        &fixtures::tiny_config(),
        &hf_weights(Dtype::Float32),
    );
    let file = dir.path().join("model.safetensors");
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::Weights { .. }), "{err}");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    fs::write(&file, &bytes[..4]).unwrap();
    let err = load(dir.path()).err().unwrap();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = utils::load_config(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::MissingFile { path, .. } if path.ends_with("config.json")),
        "{err}"
    );

    fs::write(
        dir.path().join("config.json"),
        "{\n  \"model_type\": \"qwen2_5_vl\",\n  oops\n}",
    )
    .unwrap();
    let err = utils::load_config(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Config { .. }) && msg.contains("line 3"),
        "{msg}"
    );

    let mut config = fixtures::tiny_config();
    config["model_type"] = json!("not_a_model");
    let err = mlx_vlm::registry::create_model(&config, "x/config.json")
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnknownModelType { .. }), "{msg}");
    assert!(
        msg.contains("not_a_model") && msg.contains("qwen2_5_vl") && msg.contains("x/config.json"),
        "{msg}"
    );
    assert!(mlx_vlm::registry::model_types().contains(&"qwen2_5_vl"));
}

#[test]
fn load_config_merges_generation_config() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &fixtures::tiny_config(), &BTreeMap::new());
    let config = utils::load_config(dir.path()).unwrap();
    let generation: Value = serde_json::from_str(
        &fs::read_to_string(Path::new(SHARED).join("generation_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["eos_token_id"], generation["eos_token_id"]);
    assert_eq!(config["top_k"], generation["top_k"]);
    assert_eq!(config["generation_config"], generation);
    assert_eq!(
        config["hidden_size"],
        fixtures::tiny_config()["hidden_size"]
    );
}

// ------------------------------------------------------------ hub cache

/// Runs the `#[ignore]`d test `name` of this binary in a child process
/// with `env`, so the hub variables never touch the other tests' process.
fn run_child(name: &str, env: &[(&str, &Path)]) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env_remove("HF_HUB_CACHE").env("HF_HUB_OFFLINE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run: {text}"
    );
}

#[test]
fn hub_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--org--tiny-vl");
    let snapshot = repo.join("snapshots/0123abcd");
    fs::create_dir_all(&snapshot).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    write_checkpoint(
        &snapshot,
        &fixtures::tiny_config(),
        &hf_weights(Dtype::Float32),
    );
    run_child(
        "hub_cache_offline_child",
        &[("HF_HOME", home.path()), ("EXPECTED_SNAPSHOT", &snapshot)],
    );
}

#[test]
#[ignore = "run by hub_cache_offline with HF_HOME set"]
fn hub_cache_offline_child() {
    let snapshot = std::path::PathBuf::from(std::env::var_os("EXPECTED_SNAPSHOT").unwrap());
    let path = utils::get_model_path("org/tiny-vl", None).unwrap();
    assert_eq!(path, snapshot);
    assert_same(
        &params(load(&path).unwrap().as_ref()),
        &expected(&hf_weights(Dtype::Float32)),
    );
    let path = utils::get_model_path("org/tiny-vl", Some("0123abcd")).unwrap();
    assert_eq!(path, snapshot);

    let err = utils::get_model_path("org/unknown", None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Hub { .. }), "{msg}");
    assert!(
        msg.contains("org/unknown") && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    let err = utils::get_model_path("org/tiny-vl", Some("v2")).unwrap_err();
    assert!(err.to_string().contains("\"v2\""), "{err}");
}

// ------------------------------------------------------------ config vs weights

/// Loads the tiny checkpoint with `edit` applied to its config.json; the
/// stand-in model must never be built.
fn load_with_config(edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, Error) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fixtures::tiny_config();
    edit(&mut config);
    write_checkpoint(dir.path(), &config, &hf_weights(Dtype::Float32));
    let start = std::time::Instant::now();
    let err = utils::load_model_with(dir.path(), &LoadOptions::default(), |_, _| {
        panic!("the model must not be built")
    })
    .err()
    .unwrap();
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    (dir, err)
}

fn assert_config_error(err: &Error, dir: &Path, needles: &[&str]) {
    let Error::Config { file, message } = err else {
        panic!("expected Error::Config, got {err:?}")
    };
    assert_eq!(
        Path::new(file),
        dir.join("config.json"),
        "the error names config.json"
    );
    for needle in needles {
        assert!(message.contains(needle), "{message} lacks {needle}");
    }
}

#[test]
fn config_values_are_checked_against_the_weight_headers() {
    let (dir, err) = load_with_config(|c| c["num_hidden_layers"] = json!(1_000_000_000));
    assert_config_error(
        &err,
        dir.path(),
        &["num_hidden_layers is 1000000000", "2 decoder layers"],
    );
    let (dir, err) = load_with_config(|c| c["vision_config"]["depth"] = json!(7));
    assert_config_error(
        &err,
        dir.path(),
        &["vision_config.depth is 7", "2 vision blocks"],
    );
    let (dir, err) = load_with_config(|c| c["vocab_size"] = json!(1000));
    assert_config_error(
        &err,
        dir.path(),
        &["vocab_size is 1000", "embed_tokens", "151936"],
    );
    let (dir, err) = load_with_config(|c| c["intermediate_size"] = json!(256));
    assert_config_error(
        &err,
        dir.path(),
        &["intermediate_size is 256", "gate_proj", "192"],
    );
    let (dir, err) = load_with_config(|c| {
        c["hidden_size"] = json!(128);
        c["rope_scaling"]["mrope_section"] = json!([4, 6, 6]);
    });
    assert_config_error(&err, dir.path(), &["hidden_size is 128", "[151936, 64]"]);
    let (dir, err) = load_with_config(|c| c["vision_config"]["hidden_size"] = json!(48));
    assert_config_error(
        &err,
        dir.path(),
        &["vision_config.hidden_size is 48", "patch_embed"],
    );
    let (dir, err) = load_with_config(|c| c["vision_config"]["intermediate_size"] = json!(96));
    assert_config_error(&err, dir.path(), &["vision_config.intermediate_size is 96"]);
    let (dir, err) = load_with_config(|c| c["vision_config"]["out_hidden_size"] = json!(32));
    assert_config_error(
        &err,
        dir.path(),
        &["vision_config.out_hidden_size is 32", "merger"],
    );
    let (dir, err) = load_with_config(|c| c["rope_scaling"]["mrope_section"] = json!([2, 3]));
    assert_config_error(
        &err,
        dir.path(),
        &["mrope_section [2, 3]", "head_dim / 2 = 8"],
    );
    let (dir, err) = load_with_config(|c| c["rope_scaling"]["mrope_section"] = json!([2, 3, 4]));
    assert_config_error(&err, dir.path(), &["mrope_section [2, 3, 4]"]);
    let (dir, err) = load_with_config(|c| c["num_attention_heads"] = json!(0));
    assert_config_error(&err, dir.path(), &["num_attention_heads is 0"]);
}

#[test]
fn integer_weight_where_a_float_is_expected_is_named() {
    let mut hf = hf_weights(Dtype::Float32);
    hf.insert(
        "model.norm.weight".into(),
        mlx_rs::ops::zeros(&[64], Dtype::Int32).unwrap(),
    );
    let msg = load_error(&hf);
    assert!(
        msg.contains("model.norm.weight") && msg.contains("I32") && msg.contains("floating"),
        "{msg}"
    );
}

/// Rewrites the safetensors header of `file` with `edit`, keeping the data.
fn edit_header(file: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let bytes = fs::read(file).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    edit(header.as_object_mut().unwrap());
    let mut text = header.to_string().into_bytes();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(&text);
    out.extend(&bytes[8 + len..]);
    fs::write(file, out).unwrap();
}

#[test]
fn overlapping_safetensors_offsets_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(
        dir.path(),
        &fixtures::tiny_config(),
        &hf_weights(Dtype::Float32),
    );
    let file = dir.path().join("model.safetensors");
    // Two tensors of the same size: point the second at the first's bytes.
    edit_header(&file, |h| {
        let a = h["model.layers.0.input_layernorm.weight"]["data_offsets"].clone();
        h["model.layers.1.input_layernorm.weight"]["data_offsets"] = a;
    });
    let err = load(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{msg}");
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(
        msg.contains("overlap") && msg.contains("input_layernorm"),
        "{msg}"
    );
    // data_offsets that disagree with the dtype and shape.
    write_checkpoint(
        dir.path(),
        &fixtures::tiny_config(),
        &hf_weights(Dtype::Float32),
    );
    edit_header(&file, |h| {
        h["model.norm.weight"]["shape"] = json!([1000]);
    });
    let err = load(dir.path()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Weights { .. }), "{msg}");
    assert!(
        msg.contains("model.norm.weight") && msg.contains("4000 bytes"),
        "{msg}"
    );
}
