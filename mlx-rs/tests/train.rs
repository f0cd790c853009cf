//! Training end to end: the train_mlp example's loss falls well below
//! chance (ln 2 for two classes).

#[path = "../examples/train_mlp.rs"]
mod train_mlp;

#[test]
fn the_example_mlp_learns_the_synthetic_task() {
    let history = train_mlp::train(60).unwrap();
    let (first, last) = (history[0], *history.last().unwrap());
    assert!(
        first > 0.5,
        "the untrained loss is near chance, got {first}"
    );
    assert!(
        last < 0.15,
        "the loss should fall below 0.15 after 60 steps, got {last} (history {history:?})"
    );
    assert!(
        history.windows(10).all(|w| w[9] <= w[0] + 1e-3),
        "the loss falls: {history:?}"
    );
}
