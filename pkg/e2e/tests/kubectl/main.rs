//! The real kubectl (the dispatcher in /usr/bin, which picks kubectl 1.33 from the server's
//! /version) against a real kubelite API server, every test on both storage backends.
//!
//! Run: `cargo test -p kubelite-e2e --test kubectl` (libtest arguments work: a name filter,
//! `--test-threads`, `--list`). Trial names are `<backend>::<module>::<test>`.

mod apply;
mod basics;
mod crd;
mod create_get;
mod delete;
mod errors;
mod inspect;
mod mutate;
mod nodes;
mod typed_create;
mod watch;

kubelite_e2e::e2e_main!(
    basics::version,
    basics::api_resources,
    basics::get_all_empty_namespace,
    basics::cluster_info,
    basics::bootstrap_objects,
    basics::raw_endpoints,
    basics::raw_list_pagination,
    create_get::create_from_file_and_tables,
    create_get::output_formats_and_defaults,
    create_get::list_and_multi_doc_manifests,
    create_get::label_and_field_selectors,
    create_get::all_namespaces_and_chunking,
    create_get::short_names,
    apply::client_side_apply_lifecycle,
    apply::server_side_apply,
    mutate::label_and_annotate,
    mutate::patch_types,
    mutate::replace_conflict_and_scale,
    mutate::status_subresource,
    typed_create::typed_create_subcommands,
    typed_create::typed_create_service_types,
    delete::delete_pods,
    delete::delete_cascade_policies,
    delete::delete_by_label_and_namespace,
    delete::terminating_namespace,
    errors::error_messages,
    errors::field_validation,
    errors::immutable_fields,
    watch::get_watch,
    watch::raw_watch_events,
    watch::wait_for_delete_and_jsonpath,
    inspect::describe,
    inspect::explain,
    inspect::sort_by,
    inspect::diff_and_set_image,
    inspect::streams_without_kubelet,
    nodes::node_admin,
    crd::crd_lifecycle,
);
