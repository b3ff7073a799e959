//! The plan layer of orch: what an environment is before any engine sees it.
//!
//! [`plan`] (the plan, drafted from a compose model), [`labels`] (the labels orch's resources carry), [`facts`]
//! (what the host already holds: subnets, routes, listening ports), [`resolve`] (subnets and host ports allocated
//! against the facts), [`validate`] (the checks a plan passes before it is applied), [`export`] (a plan as a compose
//! file), [`procfs`] (what orch reads from `/proc`) and [`atomic`] (replacing orch's own files atomically). It knows nothing of engines, plugins or sessions:
//! every crate above it (the engine, the plugin host, the library) depends on it, never the other way round.

pub mod atomic;
pub mod export;
pub mod facts;
pub mod labels;
pub mod plan;
pub mod procfs;
pub mod resolve;
pub mod validate;

/// Plans drafted from compose text, for the tests of this crate and those above it (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    /// `compose` (YAML) loaded as project `project` and drafted for environment `env`.
    pub fn drafted(compose: &str, project: &str, env: &str) -> crate::plan::Plan {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, compose).unwrap();
        let loaded = orch_compose::load(&orch_compose::LoadOptions { files: vec![file], project_name: Some(project.into()), ..Default::default() }).unwrap();
        let identity = crate::plan::Identity { project: project.into(), env_id: env.into(), env_kind: Default::default() };
        crate::plan::draft(&loaded.project, &identity, &loaded.variables)
    }

    /// [`drafted`], then allocated from the default pool against no host facts, and validated.
    pub fn resolved(compose: &str, project: &str, env: &str) -> crate::plan::Plan {
        let mut plan = drafted(compose, project, env);
        let facts = crate::facts::Facts::default();
        crate::resolve::resolve(&mut plan, &facts, &[crate::resolve::DEFAULT_POOL.parse().unwrap()]).unwrap();
        crate::validate::validate(&mut plan, &facts);
        plan
    }
}
