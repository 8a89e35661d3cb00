//! Views of the admin console (`/admin`): one page layout, filled with tables and forms, so every
//! section looks and behaves the same. No scripts; every value escaped by askama.

use askama::Template;

/// A console page.
#[derive(Template)]
#[template(path = "admin/page.html")]
pub struct AdminPage {
    pub css_href: String,
    pub title: String,
    pub nav: Vec<NavLink>,
    pub username: String,
    /// A one-line outcome ("Added bob.").
    pub notice: Option<String>,
    /// A secret shown once (a generated password): label and value.
    pub secret: Option<(String, String)>,
    pub sections: Vec<Section>,
}

pub struct NavLink {
    pub href: String,
    pub label: String,
    pub current: bool,
}

/// A heading with a table, a form, or preformatted text.
pub struct Section {
    pub heading: String,
    pub table: Option<Table>,
    pub form: Option<FormView>,
    pub pre: Option<String>,
    pub empty: String,
}

pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

pub enum Cell {
    Text(String),
    /// A link, e.g. to the confirmation step of a destructive action.
    Link {
        href: String,
        label: String,
    },
}

pub struct FormView {
    pub action: String,
    pub csrf_token: String,
    pub fields: Vec<Field>,
    pub submit: String,
    /// A destructive action's confirmation (red button).
    pub danger: bool,
}

pub struct Field {
    pub label: String,
    pub name: String,
    /// `text`, `email`, `url`, `password`, `checkbox` or `hidden`.
    pub kind: &'static str,
    pub value: String,
    pub required: bool,
    pub hint: String,
}

impl Field {
    pub fn new(label: &str, name: &str, kind: &'static str) -> Field {
        Field {
            label: label.into(),
            name: name.into(),
            kind,
            value: String::new(),
            required: false,
            hint: String::new(),
        }
    }

    pub fn hidden(name: &str, value: &str) -> Field {
        Field { value: value.into(), ..Field::new("", name, "hidden") }
    }

    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }

    pub fn hint(mut self, hint: &str) -> Field {
        self.hint = hint.into();
        self
    }
}
