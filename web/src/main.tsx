/** Entry point: wires the services once, then renders the app. */
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { BrowserRouter } from 'react-router';
import { App } from './App';
import { apiBaseUrl } from './config';
import { browserServiceDeps, createAppServices } from './services';
import { ServicesProvider } from './ui/services-context';
import './styles.css';

const services = createAppServices(browserServiceDeps(apiBaseUrl()));
const container = document.getElementById('root');
if (!container) throw new Error('index.html has no #root element.');

createRoot(container).render(
  <StrictMode>
    <ServicesProvider services={services}>
      <BrowserRouter>
        <App />
      </BrowserRouter>
    </ServicesProvider>
  </StrictMode>,
);
