//! Internal to tickcache: writes its I/O-free flash core once and compiles it twice.
//!
//! [`macro@dual`] on an `impl` block (or a free `async fn`) emits the item unchanged (the
//! async variant, for the async front end) and, beside it, a blocking variant of each of
//! its `async fn`s: `async` dropped, every `.await` dropped, and each function that was
//! awaited renamed with a `_blocking` suffix, in definitions and in calls alike (so the two
//! variants can be inherent methods of one type). The core's I/O object `&IoOf<..>`
//! becomes `&mut SyncIoOf<'_, ..>`, whose `read_blocking`/`write_blocking`/`erase_blocking`
//! perform each request on the flash at once. The blocking variant is thus ordinary
//! functions: no futures, no state machines. Items that are not `async fn`s are emitted
//! once (in the async copy). `#[blocking(attr)]` on an `async fn` gives its blocking
//! variant `#[attr]` (e.g. `inline(never)`) and leaves the async one as it is.

use proc_macro::{Delimiter, Group, Ident, Spacing, TokenStream, TokenTree};

/// Emits the item and its blocking variant (see the crate documentation).
#[proc_macro_attribute]
pub fn dual(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return error("`dual` takes no arguments");
    }
    let toks: Vec<TokenTree> = item.clone().into_iter().collect();
    let blocking = match toks.iter().position(|t| is_ident(t, "impl")) {
        Some(_) if ends_with_brace(&toks) && !is_fn_item(&toks) => blocking_impl(toks),
        _ if is_fn_item(&toks) => Ok(convert(toks)),
        _ => Err("`dual` goes on an `impl` block or an `async fn`"),
    };
    match blocking {
        Ok(b) => {
            let mut out = async_copy(item);
            out.extend(b);
            out
        }
        Err(e) => error(e),
    }
}

/// The arguments of a `#[blocking(..)]` attribute starting at `toks[i]`.
fn blocking_attr(toks: &[TokenTree], i: usize) -> Option<TokenStream> {
    if !is_punct(&toks[i], '#') {
        return None;
    }
    let TokenTree::Group(g) = toks.get(i + 1)? else {
        return None;
    };
    let inner: Vec<TokenTree> = g.stream().into_iter().collect();
    match inner.as_slice() {
        [name, TokenTree::Group(args)]
            if g.delimiter() == Delimiter::Bracket
                && is_ident(name, "blocking")
                && args.delimiter() == Delimiter::Parenthesis =>
        {
            Some(args.stream())
        }
        _ => None,
    }
}

/// The async variant: the item as written, without its `#[blocking(..)]` attributes.
fn async_copy(ts: TokenStream) -> TokenStream {
    let toks: Vec<TokenTree> = ts.into_iter().collect();
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if blocking_attr(&toks, i).is_some() {
            i += 2;
            continue;
        }
        out.push(match &toks[i] {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), async_copy(g.stream()));
                ng.set_span(g.span());
                TokenTree::Group(ng)
            }
            t => t.clone(),
        });
        i += 1;
    }
    out.into_iter().collect()
}

fn error(msg: &str) -> TokenStream {
    format!("compile_error!({msg:?});")
        .parse()
        .unwrap_or_default()
}

fn is_ident(t: &TokenTree, name: &str) -> bool {
    matches!(t, TokenTree::Ident(i) if i.to_string() == name)
}

fn is_punct(t: &TokenTree, c: char) -> bool {
    matches!(t, TokenTree::Punct(p) if p.as_char() == c)
}

fn is_brace(t: &TokenTree) -> bool {
    matches!(t, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
}

fn ends_with_brace(toks: &[TokenTree]) -> bool {
    toks.last().is_some_and(is_brace)
}

/// True when the item's top level (before its body) declares an `async fn`.
fn is_fn_item(toks: &[TokenTree]) -> bool {
    let head = &toks[..toks.len().saturating_sub(1)];
    head.iter().any(|t| is_ident(t, "fn")) && head.iter().any(|t| is_ident(t, "async"))
}

/// The impl block's header kept, its body reduced to the blocking variants of its
/// `async fn`s (nothing when it has none).
fn blocking_impl(mut toks: Vec<TokenTree>) -> Result<TokenStream, &'static str> {
    let Some(TokenTree::Group(body)) = toks.pop() else {
        return Err("`dual`: an impl block without a body");
    };
    let mut items = Vec::new();
    let mut cur: Vec<TokenTree> = Vec::new();
    for t in body.stream() {
        let end = is_punct(&t, ';') || (is_brace(&t) && cur.iter().any(|c| is_ident(c, "fn")));
        cur.push(t);
        if end {
            items.push(core::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        return Err("`dual`: an item of the impl block is not understood");
    }
    let mut new_body = TokenStream::new();
    for item in items.into_iter().filter(|i| is_fn_item(i)) {
        new_body.extend(convert(item));
    }
    if new_body.is_empty() {
        return Ok(TokenStream::new());
    }
    let mut out: TokenStream = toks.into_iter().collect();
    out.extend([TokenTree::Group(Group::new(Delimiter::Brace, new_body))]);
    Ok(out)
}

/// The blocking variant of a token stream: `async` and `.await` dropped, awaited calls
/// and `async fn` names suffixed, `&IoOf<` made `&mut SyncIoOf<'_,`.
fn convert(toks: Vec<TokenTree>) -> TokenStream {
    let mut out: Vec<TokenTree> = Vec::with_capacity(toks.len());
    let mut after_async_fn = false;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if let Some(attr) = blocking_attr(&toks, i) {
            // `#[blocking(attr)]`: `#[attr]`.
            out.push(t.clone());
            out.push(TokenTree::Group(Group::new(Delimiter::Bracket, attr)));
            i += 2;
            continue;
        }
        match t {
            TokenTree::Ident(id) if id.to_string() == "async" => {
                after_async_fn = true;
            }
            TokenTree::Ident(id) if after_async_fn && id.to_string() != "fn" => {
                out.push(TokenTree::Ident(suffixed(id)));
                after_async_fn = false;
            }
            TokenTree::Punct(p)
                if p.as_char() == '&' && toks.get(i + 1).is_some_and(|n| is_ident(n, "IoOf")) =>
            {
                // `&IoOf<..>`: the blocking I/O object is taken by `&mut`.
                out.push(t.clone());
                out.extend("mut".parse::<TokenStream>().unwrap_or_default());
            }
            TokenTree::Ident(id) if id.to_string() == "IoOf" => {
                out.push(TokenTree::Ident(Ident::new("SyncIoOf", id.span())));
                if toks.get(i + 1).is_some_and(|n| is_punct(n, '<')) {
                    out.push(toks[i + 1].clone());
                    out.extend("'_,".parse::<TokenStream>().unwrap_or_default());
                    i += 1;
                }
            }
            TokenTree::Punct(p)
                if p.as_char() == '.'
                    && p.spacing() == Spacing::Alone
                    && toks.get(i + 1).is_some_and(|n| is_ident(n, "await")) =>
            {
                // `name(args).await`: `name_blocking(args)`.
                let n = out.len();
                if n >= 2
                    && matches!(&out[n - 1], TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis)
                {
                    if let TokenTree::Ident(name) = &out[n - 2] {
                        out[n - 2] = TokenTree::Ident(suffixed(name));
                    }
                }
                i += 1;
            }
            TokenTree::Group(g) => {
                let inner = convert(g.stream().into_iter().collect());
                let mut ng = Group::new(g.delimiter(), inner);
                ng.set_span(g.span());
                out.push(TokenTree::Group(ng));
            }
            _ => out.push(t.clone()),
        }
        i += 1;
    }
    out.into_iter().collect()
}

fn suffixed(id: &Ident) -> Ident {
    Ident::new(&format!("{id}_blocking"), id.span())
}
