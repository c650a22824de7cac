//! The whole CRD path the apiserver drives, on a realistic CRD from YAML: default, prepare,
//! validate the CRD; compile the schema; prune, default, validate custom resources; table cells,
//! scale and OpenAPI.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kubelite_apiextensions::{
    cel, default_crd, invalid_message, openapi, prepare_crd_for_create, printer_columns, scale,
    validate_crd, Schema,
};
use serde_json::{json, Value};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            x-kubernetes-validations:
            - rule: "self.replicas <= 10"
              message: "at most 10 replicas"
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                default: 1
          status:
            type: object
            properties:
              replicas:
                type: integer
              labelSelector:
                type: string
"#;

fn load_crd() -> CustomResourceDefinition {
    let mut raw: Value = serde_yaml_ng::from_str(CRD).expect("yaml");
    default_crd(&mut raw);
    let mut crd: CustomResourceDefinition = serde_json::from_value(raw).expect("crd");
    prepare_crd_for_create(&mut crd);
    crd
}

#[test]
fn crontab_end_to_end() {
    let crd = load_crd();
    assert_eq!(validate_crd(&crd), vec![]);
    assert_eq!(crd.spec.names.list_kind.as_deref(), Some("CronTabList"));

    let version = &crd.spec.versions[0];
    let props = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    let schema = Schema::compile(props).expect("compile");

    // Create: prune unknown fields, default, validate.
    let mut obj = json!({
        "apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "my-new-cron-object", "namespace": "default",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "bogus": true}
    });
    assert_eq!(schema.prune(&mut obj), vec!["spec.bogus".to_string()]);
    schema.apply_defaults(&mut obj);
    assert_eq!(obj["spec"]["replicas"], 1);
    assert!(schema.validate(&obj).is_empty());
    assert!(cel::validate_rules(&schema, &obj, None).is_empty());

    // Invalid object: the 422 message as kubectl prints it.
    let bad = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                     "metadata": {"name": "bad"}, "spec": {"cronSpec": "nope", "replicas": 0}});
    let mut errs = schema.validate(&bad);
    errs.extend(cel::validate_rules(&schema, &bad, None));
    assert_eq!(
        invalid_message("CronTab.stable.example.com", "bad", &errs),
        r#"CronTab.stable.example.com "bad" is invalid: [spec.cronSpec: Invalid value: "nope": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$', spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1]"#
    );
    let too_many = json!({"spec": {"cronSpec": "* * * * *", "replicas": 11}});
    let cel_errs: Vec<String> = cel::validate_rules(&schema, &too_many, None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        cel_errs,
        [r#"spec: Invalid value: "object": at most 10 replicas"#]
    );

    // Table.
    let cols = printer_columns(version);
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Name", "Spec", "Replicas", "Age"]);
    let now = chrono::DateTime::parse_from_rfc3339("2024-01-03T01:00:00Z")
        .expect("now")
        .with_timezone(&chrono::Utc);
    let cells: Vec<Value> = cols.iter().map(|c| c.cell(&obj, now)).collect();
    assert_eq!(
        cells,
        [
            json!("my-new-cron-object"),
            json!("* * * * */5"),
            json!(1),
            json!("2d1h")
        ]
    );

    // Scale.
    let scale_def = version
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("scale");
    scale::set_replicas(&mut obj, &scale_def.spec_replicas_path, 3).expect("set");
    let sc = scale::get_scale(&obj, scale_def).expect("scale");
    assert_eq!(sc["spec"]["replicas"], 3);
    assert_eq!(sc["metadata"]["name"], "my-new-cron-object");

    // OpenAPI.
    let comps = openapi::components(&crd, "v1");
    assert!(comps.contains_key("com.example.stable.v1.CronTab"));
    assert!(comps.contains_key("com.example.stable.v1.CronTabList"));
}
