//! The old bridge's lookups, answered by the library: number checks, contact
//! info, group metadata (participants with their phone numbers), presence.

use std::sync::Arc;

use whatsapp_rust::Jid;
use whatsapp_rust::prelude::Client;

use crate::engine::backend::{Answer, ContactInfo, GroupInfo, GroupMember, NumberCheck, Query};

fn parse(jid: &str) -> Result<Jid, String> {
    jid.parse().map_err(|e| format!("invalid JID {jid}: {e}"))
}

pub async fn answer(client: &Arc<Client>, query: Query) -> Result<Answer, String> {
    match query {
        Query::CheckNumbers(phones) => {
            let jids: Vec<Jid> = phones.iter().map(|p| Jid::pn(p.as_str())).collect();
            let results = client
                .contacts()
                .is_on_whatsapp(&jids)
                .await
                .map_err(|e| format!("number check failed: {e}"))?;
            let checks = phones
                .iter()
                .map(|phone| {
                    let found = results.iter().find(|r| {
                        r.jid.user == phone.as_str()
                            || r.pn_jid.as_ref().is_some_and(|p| p.user == phone.as_str())
                    });
                    NumberCheck {
                        phone: phone.clone(),
                        exists: found.is_some_and(|r| r.is_registered),
                        jid: found.map(|r| r.pn_jid.as_ref().unwrap_or(&r.jid).to_string()),
                        lid: found.and_then(|r| r.lid.as_ref().map(Jid::to_string)),
                        is_business: found.is_some_and(|r| r.is_business),
                    }
                })
                .collect();
            Ok(Answer::Numbers(checks))
        }
        Query::ContactInfo(jid) => {
            let jid = parse(&jid)?;
            let infos = client
                .contacts()
                .get_user_info(std::slice::from_ref(&jid))
                .await
                .map_err(|e| format!("contact lookup failed: {e}"))?;
            let info = infos
                .into_values()
                .next()
                .ok_or_else(|| format!("no contact info for {jid}"))?;
            Ok(Answer::Contact(ContactInfo {
                jid: info.jid.to_string(),
                lid: info.lid.as_ref().map(Jid::to_string),
                status: info.status,
                picture_id: info.picture_id,
                is_business: info.is_business,
                verified_name: info.verified_name.and_then(|v| v.name),
            }))
        }
        Query::GroupMetadata(jid) => {
            let jid = parse(&jid)?;
            let metadata = client
                .groups()
                .get_metadata(&jid)
                .await
                .map_err(|e| format!("group lookup failed: {e}"))?;
            Ok(Answer::Group(GroupInfo {
                id: metadata.id.to_string(),
                subject: metadata.subject.clone(),
                creation: metadata.creation_time,
                participants: metadata
                    .participants
                    .iter()
                    .map(|p| GroupMember {
                        jid: p.jid.to_string(),
                        phone: p
                            .phone_number
                            .as_ref()
                            .or(Some(&p.jid).filter(|j| j.is_pn()))
                            .map(|j| j.user.to_string()),
                        lid: p
                            .lid
                            .as_ref()
                            .or(Some(&p.jid).filter(|j| j.is_lid()))
                            .map(|j| j.user.to_string()),
                        admin: p.is_admin(),
                    })
                    .collect(),
            }))
        }
        Query::SubscribePresence(jid) => {
            client
                .presence()
                .subscribe(parse(&jid)?)
                .await
                .map_err(|e| format!("presence subscription failed: {e}"))?;
            Ok(Answer::Subscribed)
        }
    }
}
