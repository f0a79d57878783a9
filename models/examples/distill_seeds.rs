//! Did distillation beat the labels-only control? Trains teacher, distilled student and control
//! student of each digits model over three seeds and prints test accuracies.
//!
//! `cargo run --release -p slimbench-models --example distill_seeds`

use slimbench_models::digits::data::digits_split;
use slimbench_models::digits::distill::{
    distill, train_control, DEFAULT_ALPHA, DEFAULT_TEMPERATURE,
};
use slimbench_models::digits::net::{predictions, NetSpec, Network};
use slimbench_models::digits::train::{tensors_of, train, TrainConfig};
use slimbench_models::digits::{cnn, mlp, student_config, train_config};
use slimbench_models::quality::accuracy_pct;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (train_set, test) = digits_split()?;
    let (x, _) = tensors_of(&test)?;
    let acc = |n: &Network| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(accuracy_pct(&predictions(&n.forward(&x)?)?, &test.labels))
    };
    let models: [(&str, NetSpec, NetSpec); 2] = [
        (mlp::NAME, mlp::spec(), mlp::student_spec()),
        (cnn::NAME, cnn::spec(), cnn::student_spec()),
    ];
    println!("model,seed,teacher_pct,distilled_pct,control_pct,gain_points");
    for (name, teacher_spec, student_spec) in models {
        let mut gains = Vec::new();
        for seed in 0..3u64 {
            let tc = TrainConfig {
                seed,
                ..train_config(name)?
            };
            let teacher = train(
                &Network::init(&teacher_spec, seed)?,
                &train_set,
                &tc,
                None,
                None,
            )?;
            let sc = TrainConfig {
                seed,
                ..student_config(name)?
            };
            let student = distill(
                &teacher,
                &student_spec,
                &train_set,
                &sc,
                DEFAULT_TEMPERATURE,
                DEFAULT_ALPHA,
            )?;
            let control = train_control(&student_spec, &train_set, &sc)?;
            let (t, d, c) = (acc(&teacher)?, acc(&student)?, acc(&control)?);
            gains.push(d - c);
            println!("{name},{seed},{t:.2},{d:.2},{c:.2},{:+.2}", d - c);
        }
        let mean = gains.iter().sum::<f64>() / gains.len() as f64;
        println!("{name},mean,,,,{mean:+.2}");
    }
    Ok(())
}
