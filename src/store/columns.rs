//! Domain types stored as text columns (client ids and scope sets), on both engines: encoded as their canonical string,
//! decoded through their parser, so a row never carries an unchecked string past the store and a
//! value that no longer parses is a decoding error (a corrupt row), never a default.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

macro_rules! text_column {
    ($ty:ty, |$s:ident| $parse:expr, |$v:ident| $render:expr) => {
        impl<DB: Database> Type<DB> for $ty
        where
            String: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $ty
        where
            String: Decode<'r, DB>,
        {
            fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let $s = <String as Decode<'r, DB>>::decode(value)?;
                $parse
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $ty
        where
            String: Encode<'q, DB>,
        {
            fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer<'q>) -> Result<IsNull, BoxDynError> {
                let $v = self;
                <String as Encode<'q, DB>>::encode($render, buf)
            }
        }
    };
}

text_column!(ClientId, |s| Ok(ClientId::parse(s)), |v| v.as_str().to_owned());
text_column!(ScopeSet, |s| Ok(ScopeSet::from_stored(&s)?), |v| v.to_string());
text_column!(crate::users::groups::Groups, |s| Ok(crate::users::groups::Groups::from_json(&s)?), |v| v.to_json());
