import CRdmigShims

/// The VFIO ioctl request numbers, as the installed kernel headers encode them for this
/// architecture (the `_IO()` macros are evaluated in C by CRdmigShims).
public enum VFIORequest {
    /// `VFIO_DEVICE_FEATURE` = _IO(';', 100 + 17), on the device fd.
    public static var deviceFeature: UInt { UInt(rdmig_vfio_device_feature_request()) }
    /// `VFIO_MIG_GET_PRECOPY_INFO` = _IO(';', 100 + 21), on the migration data fd.
    public static var migGetPrecopyInfo: UInt { UInt(rdmig_vfio_mig_get_precopy_info_request()) }
    /// `VFIO_DEVICE_BIND_IOMMUFD` = _IO(';', 100 + 18), on a device cdev before any other use.
    public static var deviceBindIOMMUFD: UInt { UInt(rdmig_vfio_device_bind_iommufd_request()) }
    /// `VFIO_DEVICE_RESET` = _IO(';', 100 + 11).
    public static var deviceReset: UInt { UInt(rdmig_vfio_device_reset_request()) }

    /// The asm-generic `_IO(type, nr)` encoding (direction none, size 0): `type << 8 | nr`.
    /// x86 and arm64 use it; the tests check the C values against it.
    public static func genericIO(type: UInt8, number: UInt8) -> UInt { UInt(type) << 8 | UInt(number) }
}
