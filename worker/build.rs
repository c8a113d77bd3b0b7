include!("../build.rs");
