//! The external driver: the operator's virtualization (libvirt, OpenNebula)
//! creates and destroys the VM and plugs its interface into the bridge with
//! the port name flowgate assigned (shown as `flowgateInterfaceName` in
//! DescribeInstances and by `flowgate admin instance list`). flowgate only
//! binds the port when it appears: nothing to do at launch or termination.

use model::Instance;

/// Instances whose VM someone else runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExternalDriver;

impl ExternalDriver {
    /// Nothing to start: the instance waits for its port.
    pub fn launch(&self, instance: &Instance) -> Result<(), String> {
        tracing::info!(
            instance = %instance.id,
            port = %instance.interface_name,
            "waiting for the VM's port to be plugged"
        );
        Ok(())
    }

    /// Nothing to stop: the instance's flows go with its record; the VM is
    /// the operator's to destroy.
    pub fn terminate(&self, instance: &Instance) -> Result<(), String> {
        tracing::info!(instance = %instance.id, "terminated; the VM is the operator's to remove");
        Ok(())
    }
}
