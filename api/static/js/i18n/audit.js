// The audit trail.
export default {
  vi: {
    "audit.title": "Nhật ký thao tác",
    "audit.filters": "Lọc nhật ký",
    "audit.action": "Thao tác",
    "audit.outcome": "Kết quả",
    "audit.success": "Thành công",
    "audit.failure": "Thất bại",
    "audit.target": "Đối tượng",
    "audit.request": "Nguồn / mã yêu cầu",
    "audit.detail": "Chi tiết",
    "audit.count": "{count} mục mới nhất",
  },
  en: {
    "audit.title": "Audit trail",
    "audit.filters": "Audit filters",
    "audit.action": "Action",
    "audit.outcome": "Outcome",
    "audit.success": "Success",
    "audit.failure": "Failure",
    "audit.target": "Target",
    "audit.request": "Source / request id",
    "audit.detail": "Detail",
    "audit.count": "{count} latest entries",
  },
};
