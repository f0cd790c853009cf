//! `#[derive(Module)]` for `mlx_rs::nn::Module`.
//!
//! Every named field is an item of the module under its own name, through
//! `mlx_rs::nn::ModuleField` (implemented for `Param`, modules, `Option`,
//! `Vec`, maps and plain values such as `f32`, which hold no parameters).
//! Field attributes:
//! - `#[module(key = "self_attn")]` (or `#[param(key = ...)]`): the key in
//!   parameter paths, as Python's attribute name;
//! - `#[module(skip)]`: not part of the module tree (a type that does not
//!   implement `ModuleField`, a cache...);
//! - `#[module(training)]`: a `bool` field set by `train`/`eval`.
//!
//! On the struct, `#[module(quantizable)]` makes `nn::quantize` see the
//! module's `nn::Quantizable` implementation.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr, parse_macro_input};

/// Derives `mlx_rs::nn::Module` for a struct with named fields.
#[proc_macro_derive(Module, attributes(module, param))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

struct FieldSpec {
    ident: syn::Ident,
    key: String,
    skip: bool,
    training: bool,
}

fn field_spec(field: &syn::Field) -> syn::Result<FieldSpec> {
    let ident = field
        .ident
        .clone()
        .ok_or_else(|| syn::Error::new_spanned(field, "Module fields must be named"))?;
    let mut spec = FieldSpec {
        key: ident.to_string(),
        ident,
        skip: false,
        training: false,
    };
    for attr in &field.attrs {
        if !(attr.path().is_ident("module") || attr.path().is_ident("param")) {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("key") {
                spec.key = meta.value()?.parse::<LitStr>()?.value();
            } else if meta.path.is_ident("skip") {
                spec.skip = true;
            } else if meta.path.is_ident("training") {
                spec.training = true;
                spec.skip = true;
            } else {
                return Err(meta.error("expected `key = \"...\"`, `skip` or `training`"));
            }
            Ok(())
        })?;
    }
    Ok(spec)
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "#[derive(Module)] supports structs",
        ));
    };
    let fields: Vec<FieldSpec> = match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(field_spec)
            .collect::<syn::Result<_>>()?,
        Fields::Unit => Vec::new(),
        Fields::Unnamed(_) => {
            return Err(syn::Error::new_spanned(
                input,
                "#[derive(Module)] needs named fields (they are the keys)",
            ));
        }
    };
    let mut quantizable = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("quantizable") {
                quantizable = true;
                Ok(())
            } else {
                Err(meta.error("expected `quantizable`"))
            }
        })?;
    }
    let as_quantizable = if quantizable {
        quote! {
            fn as_quantizable(&mut self) -> Option<&mut dyn ::mlx_rs::nn::Quantizable> {
                Some(self)
            }
            fn quantizable(&self) -> Option<&dyn ::mlx_rs::nn::Quantizable> {
                Some(self)
            }
        }
    } else {
        quote! {}
    };
    // `Any` needs a 'static type: structs with lifetime parameters cannot be
    // replaced by `update_modules`.
    let as_any = if input.generics.lifetimes().next().is_none() {
        quote! {
            fn as_any_mut(&mut self) -> Option<&mut dyn ::std::any::Any> {
                Some(self)
            }
        }
    } else {
        quote! {}
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let items: Vec<_> = fields.iter().filter(|f| !f.skip).collect();
    let (idents, keys): (Vec<_>, Vec<_>) = items.iter().map(|f| (&f.ident, &f.key)).unzip();
    let training: Vec<_> = fields
        .iter()
        .filter(|f| f.training)
        .map(|f| &f.ident)
        .collect();
    let is_training = match training.first() {
        Some(field) => quote! { self.#field },
        None => quote! {
            let mut any = None;
            ::mlx_rs::nn::Module::items(self, &mut |_, item| {
                if let ::mlx_rs::nn::Item::Module(m) = item {
                    any.get_or_insert(m.is_training());
                }
            });
            any.unwrap_or(true)
        },
    };
    Ok(quote! {
        impl #impl_generics ::mlx_rs::nn::Module for #name #ty_generics #where_clause {
            fn items<'__a>(&'__a self, f: &mut dyn FnMut(&str, ::mlx_rs::nn::Item<'__a>)) {
                #( ::mlx_rs::nn::ModuleField::items(&self.#idents, #keys, f); )*
            }

            fn items_mut(&mut self, f: &mut dyn FnMut(&str, ::mlx_rs::nn::ItemMut<'_>)) {
                #( ::mlx_rs::nn::ModuleField::items_mut(&mut self.#idents, #keys, f); )*
            }

            fn set_training_self(&mut self, training: bool) {
                #( self.#training = training; )*
                let _ = training;
            }

            fn is_training(&self) -> bool {
                #is_training
            }

            #as_quantizable
            #as_any
        }
    })
}
