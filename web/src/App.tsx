/** The routes: sign-in is public, everything else needs a session, admin pages a role. */
import { Navigate, Route, Routes } from 'react-router';
import { AdminSettingsPage } from './pages/AdminSettingsPage';
import { AdminUserPage } from './pages/AdminUserPage';
import { AdminUsersPage } from './pages/AdminUsersPage';
import { HomePage } from './pages/HomePage';
import { LoginPage } from './pages/LoginPage';
import { MyPresencePage } from './pages/MyPresencePage';
import { AdminOnly } from './ui/AdminOnly';
import { SignedInLayout } from './ui/SignedInLayout';
import { paths } from './ui/paths';

export function App() {
  return (
    <Routes>
      <Route path={paths.login} element={<LoginPage />} />
      <Route element={<SignedInLayout />}>
        <Route index element={<HomePage />} />
        <Route path={paths.myPresence} element={<MyPresencePage />} />
        <Route path="admin" element={<AdminOnly />}>
          <Route index element={<Navigate to={paths.adminUsers} replace />} />
          <Route path="users" element={<AdminUsersPage />} />
          <Route path="users/:userId" element={<AdminUserPage />} />
          <Route path="settings" element={<AdminSettingsPage />} />
        </Route>
      </Route>
      <Route path="*" element={<Navigate to={paths.home} replace />} />
    </Routes>
  );
}
