//! Trains a small MLP on synthetic data: two Gaussian blobs, labelled by
//! which side of a line they fall on. Prints the loss as it falls.
//!
//! `cargo run --release -p mlx-rs --example train_mlp`

use mlx_rs::nn::losses::{self, CrossEntropyOptions, Reduction};
use mlx_rs::nn::{self, Linear, ReLU};
use mlx_rs::optimizers::{self, Adam, AdamOptions};
use mlx_rs::{Array, Dtype, Result, ops, random};

/// `Linear -> ReLU -> Linear`, two classes.
#[derive(mlx_rs::Module)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// The network for `inputs` features and `classes` outputs.
    pub fn new(inputs: i32, hidden: i32, classes: i32) -> Result<Mlp> {
        Ok(Mlp {
            layers: vec![
                Linear::new(inputs, hidden, true)?,
                Linear::new(hidden, classes, true)?,
            ],
        })
    }

    /// Logits for `x`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let hidden = ReLU.forward(&self.layers[0].forward(x)?)?;
        self.layers[1].forward(&hidden)
    }
}

/// Points above or below the line `x0 + x1 = 0`, with their labels.
pub fn data(n: i32) -> Result<(Array, Array)> {
    let key = random::key(7)?;
    let x = random::normal(&[n, 2], Default::default(), Some(&key))?;
    let sum = ops::sum(&x, [1], false)?;
    let labels = ops::greater(&sum, 0.0)?.as_type(Dtype::Int32)?;
    Ok((x, labels))
}

/// Trains for `steps` steps of Adam; returns the loss after each.
pub fn train(steps: usize) -> Result<Vec<f32>> {
    random::seed(0)?;
    let (x, labels) = data(256)?;
    let mut model = Mlp::new(2, 16, 2)?;
    let mut optimizer = Adam::new(0.05, AdamOptions::default())?;
    let loss_fn = |model: &Mlp, inputs: &[Array]| -> Result<Vec<Array>> {
        let logits = model.forward(&inputs[0])?;
        let options = CrossEntropyOptions {
            reduction: Reduction::Mean,
            ..Default::default()
        };
        Ok(vec![losses::cross_entropy(&logits, &inputs[1], options)?])
    };
    let mut history = Vec::with_capacity(steps);
    for _ in 0..steps {
        let (loss, grads) = nn::value_and_grad(&mut model, &[x.clone(), labels.clone()], loss_fn)?;
        optimizers::update_model(&mut optimizer, &mut model, &grads)?;
        history.push(loss[0].item::<f32>()?);
    }
    Ok(history)
}

#[allow(dead_code)] // the test includes this file for `train` alone
fn main() -> Result<()> {
    let history = train(100)?;
    for (step, loss) in history.iter().enumerate().step_by(10) {
        println!("step {step:3}: loss {loss:.4}");
    }
    println!(
        "final loss {:.4}",
        history.last().copied().unwrap_or(f32::NAN)
    );
    Ok(())
}
