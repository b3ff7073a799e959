//! `#[plugin]` on `impl Plugin for T`: writes `implements()` from the policy methods the impl defines, so a policy a
//! plugin writes can never be skipped because a hand-kept list forgot it, and exports `T` (`export_plugin!`).

use proc_macro::TokenStream;
use quote::quote;
use syn::{ImplItem, ItemImpl, parse_macro_input, parse_quote};

/// The policy methods of `orch_plugin_api::Plugin` and the `Policy` variant each stands for.
const POLICIES: [(&str, &str); 5] = [("services", "Services"), ("images", "Images"), ("networks", "Networks"), ("ports", "Ports"), ("health", "Health")];

#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(proc_macro2::Span::call_site(), "#[orch_plugin_api::plugin] takes no arguments").to_compile_error().into();
    }
    let mut imp = parse_macro_input!(item as ItemImpl);
    let is_plugin = imp.trait_.as_ref().and_then(|(_, path, _)| path.segments.last()).is_some_and(|s| s.ident == "Plugin");
    if !is_plugin {
        return syn::Error::new_spanned(&imp.self_ty, "#[orch_plugin_api::plugin] goes on `impl Plugin for YourType { … }`").to_compile_error().into();
    }
    let defined: Vec<String> = imp
        .items
        .iter()
        .filter_map(|i| match i {
            ImplItem::Fn(f) => Some(f.sig.ident.to_string()),
            _ => None,
        })
        .collect();
    if !defined.iter().any(|d| d == "implements") {
        let variants = POLICIES.iter().filter(|(method, _)| defined.iter().any(|d| d == method)).map(|(_, variant)| {
            let v = syn::Ident::new(variant, proc_macro2::Span::call_site());
            quote!(::orch_plugin_api::Policy::#v)
        });
        imp.items.push(parse_quote! {
            fn implements() -> ::std::vec::Vec<::orch_plugin_api::Policy> {
                ::std::vec![#(#variants),*]
            }
        });
    }
    let ty = &imp.self_ty;
    quote! {
        #imp
        ::orch_plugin_api::export_plugin!(#ty);
    }
    .into()
}
