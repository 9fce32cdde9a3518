//! The MLS state of all circles in memory: the provider (openmls' key-value store), each
//! circle's group and row, and the Welcomes the hub still has to deliver. Every change goes
//! through [`super::Circles::apply`], which writes it with the circle's rows in one
//! transaction.

use std::collections::{BTreeMap, HashMap};

use cordon_proto::v1::{CircleInfo, MessageKind};
use cordon_storage::{CircleLogEntry, CircleRow, CircleWrite};
use openmls::prelude::*;

use super::mls::{self, Provider};
use super::{CircleError, STATUS_ACTIVE, kind_name};
use crate::clock::now_micros;

/// The MLS state of all circles, behind the one lock every MLS operation takes.
pub struct Inner {
    pub provider: Provider,
    pub groups: HashMap<String, MlsGroup>,
    pub rows: HashMap<String, CircleRow>,
    /// Hub: `(circle, member)` added whose Welcome is not yet delivered, with the log
    /// position of the add (as in the database's pending Welcomes).
    pub awaiting: BTreeMap<(String, String), u64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Inner")
            .field("circles", &self.rows.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(super) fn reload_groups(&mut self) {
        self.groups.clear();
        for row in self.rows.values() {
            let group_id = GroupId::from_slice(&row.group_id);
            match MlsGroup::load(self.provider.storage(), &group_id) {
                Ok(Some(group)) => {
                    self.groups.insert(row.name.clone(), group);
                }
                Ok(None) => {
                    tracing::error!(circle = %row.name, "circle has no MLS group state");
                }
                Err(error) => {
                    tracing::error!(circle = %row.name, ?error, "loading the circle's MLS group");
                }
            }
        }
    }

    /// Puts a new (or joined again) circle's group and row in place; returns the write that
    /// stores the row.
    pub(super) fn install(&mut self, group: MlsGroup, row: CircleRow) -> CircleWrite {
        self.groups.insert(row.name.clone(), group);
        self.rows.insert(row.name.clone(), row.clone());
        CircleWrite {
            circle: Some(row),
            ..CircleWrite::default()
        }
    }

    /// A circle's row (a copy, to update and write back), its group to change, and the
    /// provider to change it with.
    pub fn circle_mut(
        &mut self,
        name: &str,
    ) -> Result<(CircleRow, &mut MlsGroup, &Provider), CircleError> {
        let row = self
            .rows
            .get(name)
            .cloned()
            .ok_or_else(|| CircleError::NotFound(format!("no circle {name:?}")))?;
        let group = self
            .groups
            .get_mut(name)
            .ok_or_else(|| CircleError::Internal(format!("circle {name:?} has no MLS state")))?;
        Ok((row, group, &self.provider))
    }

    pub fn circle(&self, name: &str) -> Result<(&CircleRow, &MlsGroup), CircleError> {
        let row = self
            .rows
            .get(name)
            .ok_or_else(|| CircleError::NotFound(format!("no circle {name:?}")))?;
        let group = self
            .groups
            .get(name)
            .ok_or_else(|| CircleError::Internal(format!("circle {name:?} has no MLS state")))?;
        Ok((row, group))
    }

    /// Records in `circle`'s row a message its group has just applied (a merged commit or
    /// an application message), as the next entry of its log, which only the hub keeps:
    /// the position moves on by one and the epoch becomes the group's. The row is changed
    /// here and in `write`, where the entry is added. Returns the entry's position.
    pub(super) fn append_to_log(
        &mut self,
        circle: &str,
        epoch: u64,
        sender: &str,
        kind: MessageKind,
        message: Vec<u8>,
        write: &mut CircleWrite,
    ) -> Result<u64, CircleError> {
        let group_epoch = self.circle(circle)?.1.epoch().as_u64();
        let Some(row) = self.rows.get_mut(circle) else {
            return Err(CircleError::NotFound(format!("no circle {circle:?}")));
        };
        row.position += 1;
        row.epoch = group_epoch;
        write.circle = Some(row.clone());
        write.log.push(CircleLogEntry {
            circle: circle.to_string(),
            position: row.position,
            epoch,
            sender: sender.to_string(),
            kind: kind_name(kind).into(),
            message,
            at_micros: now_micros(),
        });
        Ok(row.position)
    }

    /// The hub's own commit, just made on `circle`'s group: merged, and appended to the log as
    /// the next entry (see [`Inner::append_to_log`]). Returns its position.
    pub(super) fn merge_own_commit(
        &mut self,
        circle: &str,
        sender: &str,
        commit: &MlsMessageOut,
        write: &mut CircleWrite,
    ) -> Result<u64, CircleError> {
        let (_, group, provider) = self.circle_mut(circle)?;
        let epoch = group.epoch().as_u64();
        group
            .merge_pending_commit(provider)
            .map_err(|error| CircleError::internal(format!("merging the commit: {error}")))?;
        let message = mls::serialize(commit).map_err(CircleError::Internal)?;
        self.append_to_log(circle, epoch, sender, MessageKind::Commit, message, write)
    }

    pub(super) fn info(&self, name: &str) -> Result<CircleInfo, CircleError> {
        let (row, group) = self.circle(name)?;
        Ok(CircleInfo {
            name: row.name.clone(),
            hub: row.hub.clone(),
            epoch: row.epoch,
            members: if row.status == STATUS_ACTIVE {
                mls::member_ids(group)
            } else {
                Vec::new()
            },
            status: row.status.clone(),
            position: row.position,
            awaiting_welcome: self
                .awaiting
                .keys()
                .filter(|(circle, _)| circle == name)
                .map(|(_, member)| member.clone())
                .collect(),
        })
    }
}
