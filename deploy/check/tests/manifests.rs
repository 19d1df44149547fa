//! The Kubernetes manifests, rendered offline by `kubectl kustomize` (base
//! and each overlay), read into k8s-openapi's types and written back: a
//! misspelled or misplaced field is dropped by the typed read, so the round
//! trip differs. Then what they reference must exist: the trousse image, the
//! container ports services and probes name, the pods selectors select, the
//! deployment the autoscaler scales, probes on `/health`.

use std::{path::Path, process::Command};

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{PodTemplateSpec, Service, ServiceAccount},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// Every object a rendering holds, as JSON.
fn render(dir: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kubernetes")
        .join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&root)
        .output()
        .expect("kubectl (with its kustomize) renders the manifests: install kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_json::to_value(serde_yaml_ng::Value::deserialize(doc).unwrap()).unwrap())
        .collect()
}

use serde::Deserialize;

/// Reads an object into its type and back; the JSON must not change.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let typed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{} does not read as its type: {e}", name(object)));
    let written = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &written,
        object,
        "{}: a field is not the API's (dropped by the typed read)",
        name(object)
    );
    typed
}

fn name(object: &Value) -> String {
    format!("{} {}", object["kind"], object["metadata"]["name"])
}

/// The typed objects of one rendering, checked one by one.
#[derive(Default)]
struct Rendered {
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    autoscalers: Vec<HorizontalPodAutoscaler>,
    others: usize,
}

fn read(objects: &[Value]) -> Rendered {
    let mut rendered = Rendered::default();
    for object in objects {
        match object["kind"].as_str().unwrap_or_default() {
            "Deployment" => rendered.deployments.push(round_trip(object)),
            "Service" => rendered.services.push(round_trip(object)),
            "HorizontalPodAutoscaler" => rendered.autoscalers.push(round_trip(object)),
            "PodDisruptionBudget" => drop(round_trip::<PodDisruptionBudget>(object)),
            "NetworkPolicy" => drop(round_trip::<NetworkPolicy>(object)),
            "ServiceAccount" => drop(round_trip::<ServiceAccount>(object)),
            other => panic!("{}: no check for kind {other}", name(object)),
        }
        if !matches!(
            object["kind"].as_str(),
            Some("Deployment" | "Service" | "HorizontalPodAutoscaler")
        ) {
            rendered.others += 1;
        }
    }
    rendered
}

fn template(deployment: &Deployment) -> &PodTemplateSpec {
    &deployment.spec.as_ref().unwrap().template
}

fn labels_match(
    selector: &std::collections::BTreeMap<String, String>,
    template: &PodTemplateSpec,
) -> bool {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Each deployment runs the trousse image, probes `/health` on a port it declares.
fn check_deployment(deployment: &Deployment, image: &str) {
    let spec = deployment.spec.as_ref().unwrap();
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert!(
        labels_match(selector, &spec.template),
        "{:?} selects none of its pods",
        deployment.metadata.name
    );
    let pod = spec.template.spec.as_ref().unwrap();
    for container in &pod.containers {
        assert_eq!(
            container.image.as_deref(),
            Some(image),
            "{:?}",
            deployment.metadata.name
        );
        let ports: Vec<&str> = container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.name.as_deref())
            .collect();
        let readiness = container
            .readiness_probe
            .as_ref()
            .expect("a readiness probe");
        let http = readiness.http_get.as_ref().expect("readiness over HTTP");
        assert_eq!(http.path.as_deref(), Some("/health"));
        assert_eq!(http.port, IntOrString::String("http".into()));
        assert!(ports.contains(&"http"), "the probe's port is declared");
        let liveness = container.liveness_probe.as_ref().expect("a liveness probe");
        assert!(
            liveness.tcp_socket.is_some(),
            "liveness does not depend on the database"
        );
        let volumes: Vec<&str> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        for mount in container.volume_mounts.iter().flatten() {
            assert!(
                volumes.contains(&mount.name.as_str()),
                "mount {} has a volume",
                mount.name
            );
        }
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
    }
}

fn check(dir: &str, image: &str) -> Rendered {
    let rendered = read(&render(dir));
    assert_eq!(
        rendered.deployments.len(),
        2,
        "{dir}: the API and the workers"
    );
    for deployment in &rendered.deployments {
        check_deployment(deployment, image);
    }
    for service in &rendered.services {
        let spec = service.spec.as_ref().unwrap();
        let selector = spec.selector.as_ref().unwrap();
        let selected: Vec<&Deployment> = rendered
            .deployments
            .iter()
            .filter(|d| labels_match(selector, template(d)))
            .collect();
        assert!(
            !selected.is_empty(),
            "{dir}: service {:?} selects no pod",
            service.metadata.name
        );
        for port in spec.ports.iter().flatten() {
            let Some(IntOrString::String(target)) = &port.target_port else {
                panic!("{dir}: target ports are named");
            };
            for deployment in &selected {
                let declared = template(deployment)
                    .spec
                    .as_ref()
                    .unwrap()
                    .containers
                    .iter()
                    .any(|c| {
                        c.ports
                            .iter()
                            .flatten()
                            .any(|p| p.name.as_deref() == Some(target))
                    });
                assert!(declared, "{dir}: port {target} is declared by the pods");
            }
        }
    }
    for hpa in &rendered.autoscalers {
        let target = &hpa.spec.as_ref().unwrap().scale_target_ref;
        assert!(
            rendered
                .deployments
                .iter()
                .any(|d| d.metadata.name.as_deref() == Some(&target.name)),
            "{dir}: the autoscaler scales {} which exists",
            target.name
        );
    }
    assert_eq!(
        rendered.others, 3,
        "{dir}: the budget, the exam policy, the account"
    );
    rendered
}

#[test]
fn the_base_renders_into_the_apis_types() {
    check("base", "trousse:0.1.0");
}

#[test]
fn production_runs_more_of_everything_from_the_institutions_registry() {
    let rendered = check(
        "overlays/production",
        "registry.example.org/trousse/trousse:0.1.0",
    );
    let workers = rendered
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some("trousse-worker"))
        .unwrap();
    assert_eq!(workers.spec.as_ref().unwrap().replicas, Some(4));
    assert_eq!(
        rendered.autoscalers[0].spec.as_ref().unwrap().min_replicas,
        Some(3)
    );
    for deployment in &rendered.deployments {
        assert_eq!(deployment.metadata.namespace.as_deref(), Some("trousse"));
    }
}

#[test]
fn staging_is_smaller_and_apart() {
    let rendered = check("overlays/staging", "trousse:0.1.0");
    for deployment in &rendered.deployments {
        assert_eq!(
            deployment.metadata.namespace.as_deref(),
            Some("trousse-staging")
        );
    }
    assert_eq!(
        rendered.autoscalers[0].spec.as_ref().unwrap().max_replicas,
        3
    );
}
